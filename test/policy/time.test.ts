import { describe, expect, test } from "vitest";
import { formatDuration, parseDuration, parseTimestamp } from "../../src/policy/time.js";

describe("durations", () => {
  test.each([
    ["PT24H", 86400],
    ["P7D", 604800],
    ["PT90M", 5400],
    ["P1DT12H", 129600],
    ["P2W", 1209600],
    ["PT1H30M15S", 5415],
    ["pt1h", 3600],
    ["3600", 3600],
    [3600, 3600],
  ])("%j is %d seconds", (input, seconds) => {
    expect(parseDuration(input)).toEqual({ ok: true, value: seconds });
  });

  test.each([
    ["P1Y", "years or months"],
    ["P1M", "years or months"],
    ["P", "not an ISO 8601 duration"],
    ["PT", "not an ISO 8601 duration"],
    ["PT0S", "longer than zero"],
    ["1.5", "not an ISO 8601 duration"],
    ["24h", "not an ISO 8601 duration"],
    [0, "positive"],
    [-5, "positive"],
    [1.5, "whole number"],
    ["P100000D", "longer than 10 years"],
    [null, "ISO 8601 duration"],
  ])("%j is refused", (input, message) => {
    const r = parseDuration(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(message);
  });

  test.each([
    [86400, "PT24H"],
    [5400, "PT1H30M"],
    [90061, "PT25H1M1S"],
    [604800, "P7D"],
    [2 * 86400 + 1, "P2DT1S"],
    [30, "PT30S"],
  ])("%d seconds formats as %s and reads back", (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
    expect(parseDuration(text)).toEqual({ ok: true, value: seconds });
  });
});

describe("timestamps", () => {
  test("zoned RFC 3339 timestamps parse to the instant they name", () => {
    expect(parseTimestamp("2026-05-02T17:42:11Z")).toEqual({
      ok: true,
      value: Date.UTC(2026, 4, 2, 17, 42, 11),
    });
    expect(parseTimestamp("2026-05-02T19:42:11+02:00")).toEqual({
      ok: true,
      value: Date.UTC(2026, 4, 2, 17, 42, 11),
    });
    expect(parseTimestamp("2026-05-02T17:42:11.5Z")).toEqual({
      ok: true,
      value: Date.UTC(2026, 4, 2, 17, 42, 11, 500),
    });
  });

  test.each([
    "2026-05-02",
    "2026-05-02T17:42:11",
    "2026-02-30T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "tomorrow",
    "",
  ])("%j is refused", (input) => {
    expect(parseTimestamp(input).ok).toBe(false);
  });
});
