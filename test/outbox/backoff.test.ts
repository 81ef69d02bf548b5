import { expect, test } from "vitest";
import { backoffMs } from "../../src/outbox/outbox.js";

const MAX = 5 * 60_000;

test.each([
  ["the first retry waits a second", 1, undefined, 1000],
  ["each retry waits twice as long", 4, new Error("x"), 8000],
  ["never longer than the maximum", 20, new Error("x"), MAX],
  [
    "a platform's longer retry-after wins",
    1,
    Object.assign(new Error("429"), { retryAfterMs: 30_000 }),
    30_000,
  ],
  ["a shorter retry-after does not shorten the backoff", 4, { retryAfterMs: 10 }, 8000],
  ["a retry-after is honoured up to an hour", 1, { retryAfterMs: 10 * 3_600_000 }, 3_600_000],
  ["a retry-after that is not a finite number is ignored", 1, { retryAfterMs: Number.NaN }, 1000],
  ["a thrown non-object has no retry-after", 2, null, 2000],
])("%s", (_name, attempts, error, expected) => {
  expect(backoffMs(attempts, MAX, error)).toBe(expected);
});
