/**
 * Thrown by an outbox handler when the other side asked us to come back later (HTTP 429 with
 * Retry-After): the outbox waits at least `retryAfterMs` before the next attempt. Any other error
 * thrown by a handler is retried with the outbox's own backoff.
 */
export class RetryLater extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}
