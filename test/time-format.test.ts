import { expect, test } from "vitest";
import { isoTimestamp } from "../src/time-format.js";

test("isoTimestamp matches toISOString, across seconds and for odd years", () => {
  const samples = [
    0,
    1,
    999,
    1000,
    1001,
    Date.parse("2026-05-01T17:42:11.007Z"),
    Date.parse("2026-05-01T17:42:11.070Z"),
  ];
  for (let i = 0; i < 2000; i++) samples.push(1_700_000_000_000 + Math.floor(Math.random() * 1e10));
  samples.push(Date.parse("+010000-01-01T00:00:00Z"), Date.parse("-000001-01-01T00:00:00Z"));
  for (const ms of samples) expect(isoTimestamp(new Date(ms))).toBe(new Date(ms).toISOString());
});
