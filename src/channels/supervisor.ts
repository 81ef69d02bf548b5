import { asAppError } from "../errors.js";
import { mendText } from "../http/validation.js";
import type { Logger } from "../logger.js";
import {
  type ApprovalChannel,
  ChannelStartError,
  type ReviewHandler,
  type ReviewInput,
  type ReviewOutcome,
} from "./channel.js";

/** `up`: receiving; `starting`: the first attempt runs; `degraded`: it failed and is retried. */
export type ChannelState = "starting" | "up" | "degraded";

export interface SupervisedChannel {
  readonly kind: ApprovalChannel["kind"];
  state(): ChannelState;
  /** Resolves when the first attempt to start has ended (connected or not). */
  readonly firstAttempt: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a channel without ever failing the server: a platform that cannot be reached (or refuses
 * the token) leaves the channel `degraded` and it is tried again in the background, with
 * exponential backoff, until it connects or the server stops. A refused token is logged as an
 * error (it needs an operator), an unreachable platform as a warning. Cards meanwhile wait in the
 * outbox, which retries them on its own.
 */
export function superviseChannel(
  channel: ApprovalChannel,
  onReview: ReviewHandler,
  log: Logger,
  opts: { firstDelayMs?: number; maxDelayMs?: number } = {},
): SupervisedChannel {
  const firstDelay = opts.firstDelayMs ?? 1000;
  const maxDelay = opts.maxDelayMs ?? 5 * 60_000;
  const handler = guardReviews(onReview, log);
  let state: ChannelState = "starting";
  let stopped = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;

  async function attempt(): Promise<void> {
    try {
      await channel.start(handler);
      if (stopped) return;
      if (failures > 0) log.info({ channel: channel.kind }, `${channel.kind} connected`);
      state = "up";
      failures = 0;
    } catch (e) {
      if (stopped) return;
      state = "degraded";
      const retryInMs = Math.min(maxDelay, firstDelay * 2 ** Math.min(failures++, 20));
      if (e instanceof ChannelStartError && e.auth)
        log.error(
          { channel: channel.kind, err: e, retryInMs },
          `${channel.kind} refused the bot token: approvals in ${channel.kind} are off until it is fixed`,
        );
      else
        log.warn(
          { channel: channel.kind, err: e, retryInMs },
          `${channel.kind} cannot be reached; trying again in the background`,
        );
      timer = setTimeout(() => {
        timer = undefined;
        void attempt();
      }, retryInMs);
      timer.unref();
    }
  }

  return {
    kind: channel.kind,
    state: () => state,
    firstAttempt: attempt(),
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await channel.stop().catch((e) => log.warn({ err: e, channel: channel.kind }, "channel stop failed"));
    },
  };
}

/**
 * What every adapter's button presses pass through on their way to the Butler: the platform's text
 * mended so that it can be stored (see `mendText`), and a failure turned into an answer for the
 * presser (a database outage says "try again"), never an exception in the adapter.
 */
export function guardReviews(onReview: ReviewHandler, log: Logger): ReviewHandler {
  return async (input) => {
    try {
      return await onReview(mendReview(input));
    } catch (e) {
      const a = asAppError(e);
      if (a?.code === "UNAVAILABLE") {
        log.error({ err: a.cause ?? a }, "review from a channel failed: the database is unavailable");
        return {
          ok: false,
          code: a.code,
          message: "Butler cannot reach its database right now; nothing was recorded. Try again in a moment.",
        } satisfies ReviewOutcome;
      }
      if (a) return { ok: false, code: a.code, message: a.message };
      log.error({ err: e }, "review from a channel failed");
      return {
        ok: false,
        code: "INTERNAL",
        message: "Something went wrong; nothing was recorded. The server log has the details.",
      };
    }
  };
}

function mendReview(input: ReviewInput): ReviewInput {
  const opt = (s: string | undefined) => (s === undefined ? undefined : mendText(s));
  return {
    ...input,
    requestId: mendText(input.requestId),
    actor: {
      ...input.actor,
      userId: mendText(input.actor.userId),
      displayName: opt(input.actor.displayName),
      email: opt(input.actor.email),
    },
    ...(input.reason !== undefined ? { reason: mendText(input.reason) } : {}),
  };
}
