import { expect, test } from "vitest";
import { backoffMs } from "../../src/outbox/outbox.js";
import { RetryLater } from "../../src/outbox/retry-later.js";

const MAX = 5 * 60_000;

test.each([
  ["the first retry waits a second", 1, undefined, 1000],
  ["each retry waits twice as long", 4, new Error("x"), 8000],
  ["never longer than the maximum", 20, new Error("x"), MAX],
  ["a platform's longer retry-after wins", 1, new RetryLater("429", 30_000), 30_000],
  ["a shorter retry-after does not shorten the backoff", 4, new RetryLater("429", 10), 8000],
  ["a retry-after is honoured up to an hour", 1, new RetryLater("429", 10 * 3_600_000), 3_600_000],
  ["only a RetryLater asks: a look-alike field on another error does not", 1, { retryAfterMs: 30_000 }, 1000],
  ["a retry-after that is not a finite number is ignored", 1, new RetryLater("429", Number.NaN), 1000],
  ["a thrown non-object has no retry-after", 2, null, 2000],
])("%s", (_name, attempts, error, expected) => {
  expect(backoffMs(attempts, MAX, error)).toBe(expected);
});
