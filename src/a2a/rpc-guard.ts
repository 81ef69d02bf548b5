import { A2AError, RequestMalformedError, TaskNotFoundError } from "@a2a-js/sdk/errors";
import { type A2ARequestHandler, ServerCallContext } from "@a2a-js/sdk/server";
import { asAppError, type ErrorCode } from "../errors.js";
import type { Logger } from "../logger.js";
import { sdkError } from "./sdk-mapping.js";
import { TaskFault } from "./task-state.js";

/** Marks, in a call's context, that it failed because the database could not be reached. */
const UNAVAILABLE = "butler.unavailable";

/** Whether the call failed because the database could not be reached (answered 503). */
export const wasUnavailable = (ctx: ServerCallContext): boolean => ctx.state.get(UNAVAILABLE) === true;

/** The Butler's error codes that mean the agent asked for something that cannot be done as asked. */
const MALFORMED: readonly ErrorCode[] = [
  "INVALID_INPUT",
  "FORBIDDEN",
  "CONFLICT",
  "GRANT_ENDED",
  "NOT_CONFIGURED",
  "IN_USE",
  "ALREADY_DECIDED",
  "EXPIRED",
  "SUPERSEDED",
  "PRECONDITION_FAILED",
];

/**
 * An error from the handler as the agent may see it: protocol errors as they are, task faults as
 * the A2A error of their kind, the Butler's own errors by their message (written for the caller),
 * anything else as a bare "internal error" (logged here with its details, which may name tables
 * or hosts and are not the caller's business).
 */
function translate(e: unknown, method: string, args: unknown[], log: Logger): unknown {
  if (e instanceof A2AError) return e;
  if (e instanceof TaskFault) return sdkError(e);
  const known = asAppError(e);
  if (known?.code === "UNAVAILABLE") {
    // Not the agent's mistake and not a bug: the endpoint answers 503 with Retry-After.
    const ctx = args.find((a): a is ServerCallContext => a instanceof ServerCallContext);
    ctx?.state.set(UNAVAILABLE, true);
    log.warn({ err: known.cause ?? known, method }, "A2A call failed: the database is unavailable");
    return new Error(known.message);
  }
  if (known) {
    if (known.code === "NOT_FOUND") return new TaskNotFoundError(known.message);
    if (MALFORMED.includes(known.code)) return new RequestMalformedError(known.message);
    if (known.code !== "INTERNAL") return new Error(known.message);
  }
  // A database error's message carries the statement's parameters (push credentials, say):
  // log what the driver said, not the query.
  log.error({ err: (e as { cause?: unknown }).cause ?? e, method }, "A2A call failed");
  return new Error("internal error; the server log has the details");
}

/** The handler with every method's errors translated for the agent (see `translate`). */
export function guard(h: A2ARequestHandler, log: Logger): A2ARequestHandler {
  const wrapped: Record<string, unknown> = {};
  for (const name of Object.keys(h) as (keyof A2ARequestHandler)[]) {
    const fn = h[name] as (...args: unknown[]) => unknown;
    if (name === "sendMessageStream" || name === "resubscribe") {
      wrapped[name] = async function* (...args: unknown[]) {
        try {
          yield* fn(...args) as AsyncGenerator<unknown>;
        } catch (e) {
          throw translate(e, name, args, log);
        }
      };
    } else {
      wrapped[name] = async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (e) {
          throw translate(e, name, args, log);
        }
      };
    }
  }
  return wrapped as unknown as A2ARequestHandler;
}
