/**
 * Errors that cross a service boundary. Pure modules return values (see result.ts); services throw
 * `AppError` with one of a closed set of codes, and one place (http/error-handler.ts, and
 * the CLI's error printer) turns the code into a status and the message into what the reader sees.
 *
 * Every error code and the HTTP status it answers with, in one list.
 */
const HTTP_STATUS = {
  INVALID_INPUT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  /** Something by that name already exists (a key file `butler audit keygen` would overwrite). */
  CONFLICT: 409,
  /** The grant was already revoked, or (one-shot) already used: there is nothing left to revoke. */
  GRANT_ENDED: 409,
  /** The server lacks a setting this needs (BUTLER_MASTER_KEY, Telegram, its webhook secret). */
  NOT_CONFIGURED: 409,
  /** Another process holds what this needs (the embedded database's data directory). */
  IN_USE: 409,
  /** The access request was already decided (or this approver already gave the other verdict). */
  ALREADY_DECIDED: 409,
  /** The access request expired before anyone decided. */
  EXPIRED: 409,
  /** At its decision the access request no longer held (policy changed, or it was altered): ask again. */
  SUPERSEDED: 409,
  /** What was asked cannot be granted as asked (a denial no grant lifts, a call a constraint governs). */
  PRECONDITION_FAILED: 409,
  PAYLOAD_TOO_LARGE: 413,
  /** The caller holds as many of something as it may (open MCP sessions per token). */
  TOO_MANY: 429,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof HTTP_STATUS;

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
  return HTTP_STATUS[code];
}

/** Every error code, in the order above. */
export const ERROR_CODES = Object.keys(HTTP_STATUS) as readonly ErrorCode[];

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}

/** What a 503 asks the caller to wait before trying again (the `Retry-After` header), in seconds. */
export const RETRY_AFTER_SECONDS = 2;

/**
 * Any error as the AppError it stands for: an AppError as it is; a failure to reach the database
 * (refused, reset, timed out, a connection terminated by the server, an overloaded or shutting
 * down server, a lock or serialization conflict) as UNAVAILABLE, which says "try again shortly";
 * text PostgreSQL cannot store (NUL, unpaired surrogates) that slipped past validation as
 * INVALID_INPUT. Anything else (a bug) is undefined. The one place driver errors are classified.
 */
export function asAppError(e: unknown): AppError | undefined {
  if (e instanceof AppError) return e;
  const kind = classify(e);
  if (kind === "unavailable")
    return new AppError("UNAVAILABLE", "the database is unavailable; try again shortly", undefined, {
      cause: e,
    });
  if (kind === "unstorable")
    return new AppError(
      "INVALID_INPUT",
      "the request holds text that cannot be stored (a NUL character or an unpaired surrogate)",
      undefined,
      { cause: e },
    );
  return undefined;
}

/** Socket errors that mean the other end cannot be reached (or went away). */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ENOTFOUND",
]);

/**
 * SQLSTATEs meaning "not now": connection exceptions (08), insufficient resources (53), operator
 * intervention such as pg_terminate_backend or a shutdown (57P01-57P03), a statement cancelled
 * by a timeout (57014), a lock not available (55P03), serialization failures and deadlocks (40001,
 * 40P01).
 */
const UNAVAILABLE_SQLSTATE = /^(08...|53...|57P0[1-3]|57014|55P03|40001|40P01)$/;
/** SQLSTATEs of text PostgreSQL refuses: U+0000 in text or jsonb, unpaired surrogate escapes. */
const UNSTORABLE_SQLSTATE = /^(22021|22P05)$/;
/** node-postgres and PGlite say these in words only. */
const UNAVAILABLE_MESSAGE =
  /^(Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Client was closed and is not queryable|Cannot use a pool after calling end|PGlite is closed)/;

function classify(e: unknown, depth = 0): "unavailable" | "unstorable" | undefined {
  if (e === null || typeof e !== "object" || depth > 5) return undefined;
  const { code, message, cause, errors } = e as {
    code?: unknown;
    message?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof code === "string") {
    if (NETWORK_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code)) return "unavailable";
    if (UNSTORABLE_SQLSTATE.test(code)) return "unstorable";
  }
  if (typeof message === "string" && UNAVAILABLE_MESSAGE.test(message)) return "unavailable";
  // Drizzle wraps the driver's error ("Failed query: ..."); a failed connect may be an AggregateError.
  const inner = classify(cause, depth + 1);
  if (inner) return inner;
  if (Array.isArray(errors))
    for (const x of errors) if (classify(x, depth + 1)) return classify(x, depth + 1);
  return undefined;
}
