/**
 * Errors that cross a service boundary. Pure modules return values (see result.ts); services throw
 * `AppError` with one of a closed set of codes, and one place (server/plugins/error-handler.ts, and
 * the CLI's error printer) turns the code into a status and the message into what the reader sees.
 */
export type ErrorCode =
  | "INVALID_INPUT"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "CONFLICT"
  | "PAYLOAD_TOO_LARGE"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "POLICY_INVALID"
  | "UNAVAILABLE"
  | "INTERNAL";

export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The HTTP status for an error code. */
export function httpStatus(code: ErrorCode): number {
  switch (code) {
    case "INVALID_INPUT":
    case "POLICY_INVALID":
      return 400;
    case "UNAUTHENTICATED":
      return 401;
    case "FORBIDDEN":
      return 403;
    case "NOT_FOUND":
      return 404;
    case "CONFLICT":
      return 409;
    case "PAYLOAD_TOO_LARGE":
      return 413;
    case "UNSUPPORTED_MEDIA_TYPE":
      return 415;
    case "UNAVAILABLE":
      return 503;
    case "INTERNAL":
      return 500;
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
