import type { SQL } from "drizzle-orm";
import type { AuditDetails, AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db, Tx } from "../db/client.js";
import { outbox } from "../db/schema.js";
import type { Logger } from "../logger.js";
import {
  claimNext,
  markDelivered,
  markGivenUp,
  markRetry,
  type OutboxRow,
  topicList,
} from "./outbox-repo.js";
import { RetryLater } from "./retry-later.js";

/**
 * Every kind of after-commit work, by topic, with the payload its messages carry. Empty here: each
 * feature declares its own topics where it enqueues them, by declaration merging
 * (`declare module "../outbox/outbox.js" { interface OutboxTopics { "card.post": ... } }`), so the
 * outbox knows no feature and a message or handler of the wrong shape does not compile.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging in each feature.
export interface OutboxTopics {}

export type Topic = keyof OutboxTopics & string;

/** Something to do after a commit. `key` orders deliveries: rows with the same key go one by one, in order. */
export type OutboxMessage = { [T in Topic]: { topic: T; key: string; payload: OutboxTopics[T] } }[Topic];

/** What a handler reports after delivering a message; recorded in the audit log. */
export interface Delivered {
  /** Audit event type, e.g. `agent.notified`; omitted for deliveries not worth an audit line. */
  auditType?: string;
  agent?: string | null;
  project?: string | null;
  /** Why, in a sentence: the line's own `reason` (a refusal's, say), never a detail. */
  reason?: string | null;
  details?: AuditDetails;
}

/** Delivers one message. Throwing means "try again later". */
export type OutboxHandler<T extends Topic> = (payload: OutboxTopics[T]) => Promise<Delivered | undefined>;

/** Handlers by topic: a worker takes only the topics it has handlers for. */
export type OutboxHandlers = { readonly [T in Topic]?: OutboxHandler<T> };

export interface OutboxDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  log: Logger;
  handlers: OutboxHandlers;
  /** Attempts before a message is given up (and audited as failed). */
  maxAttempts?: number;
  /** Longest wait between two attempts. */
  maxBackoffMs?: number;
  /** Takes secrets out of an error's text before it is stored in `last_error` and audited. */
  redact?: (text: string) => string;
}

/** Writes messages in the caller's transaction: they exist if and only if the state they follow from does. */
export async function enqueue(tx: Tx, messages: readonly OutboxMessage[], now: Date): Promise<void> {
  if (messages.length === 0) return;
  await tx.insert(outbox).values(
    messages.map((m) => ({
      topic: m.topic,
      key: m.key,
      // Payloads are JSON objects by their declarations; the column holds any JSON object.
      payload: m.payload as unknown as Record<string, unknown>,
      nextAttemptAt: now,
      createdAt: now,
    })),
  );
}

/** What a worker knows and holds: its deps, its topics, and whether a pass runs. */
interface Worker {
  deps: OutboxDeps;
  topics: SQL;
  maxAttempts: number;
  maxBackoffMs: number;
  timer: NodeJS.Timeout | undefined;
  running: Promise<number> | undefined;
  again: boolean;
  stopped: boolean;
  /** Set by stop(): passes end after the message in hand (runOnce alone, without start(), is fine). */
  stopping: boolean;
}

/**
 * How long to wait before the next attempt: exponential backoff up to `maxBackoffMs`, unless the
 * platform's own "retry after" (HTTP 429) is longer.
 */
export function backoffMs(attempts: number, maxBackoffMs: number, error: unknown): number {
  const asked = error instanceof RetryLater ? error.retryAfterMs : 0;
  return Math.max(
    Math.min(maxBackoffMs, 1000 * 2 ** (attempts - 1)),
    Number.isFinite(asked) ? Math.min(asked, 3_600_000) : 0,
  );
}

/** Records a delivery and its audit line in one transaction. */
async function recordDelivered(w: Worker, row: OutboxRow, done: Delivered | undefined): Promise<void> {
  const { db, audit, clock } = w.deps;
  const id = Number(row.id);
  await db.transaction(async (tx) => {
    await markDelivered(tx, id, row.attempts + 1, clock.now());
    if (done?.auditType) {
      await audit.appendInTx(tx, [
        {
          type: done.auditType,
          agent: done.agent ?? null,
          project: done.project ?? null,
          reason: done.reason ?? null,
          details: { ...done.details, outbox_id: id, attempt: row.attempts + 1 },
        },
      ]);
    }
  });
}

/** Records a failed attempt: gives the message up (audited) after the last one, else schedules a retry. */
async function recordFailure(w: Worker, row: OutboxRow, e: unknown, now: Date): Promise<void> {
  const { db, audit, log } = w.deps;
  const id = Number(row.id);
  const attempts = row.attempts + 1;
  // Redacted before it is cut, so that a cut can never leave part of a secret behind.
  const message = (w.deps.redact ?? String)(String((e as Error)?.message ?? e)).slice(0, 500);
  if (attempts >= w.maxAttempts) {
    await db.transaction(async (tx) => {
      await markGivenUp(tx, id, attempts, now, message);
      await audit.appendInTx(tx, [
        {
          type: "outbox.delivery_failed",
          reason: message,
          details: { outbox_id: id, topic: row.topic, key: row.key, attempts },
        },
      ]);
    });
    log.error({ outboxId: row.id, topic: row.topic, attempts, err: e }, "outbox message given up");
    return;
  }
  const backoff = backoffMs(attempts, w.maxBackoffMs, e);
  await markRetry(db, id, attempts, new Date(now.getTime() + backoff), message);
  log.warn(
    { outboxId: row.id, topic: row.topic, attempts, backoffMs: backoff, err: e },
    "outbox delivery failed; will retry",
  );
}

/**
 * Delivers one message, then records the outcome: the row's new state and its audit line are
 * written in ONE transaction, so that a crash between them cannot leave a delivery marked done
 * (or given up) without its line. If that transaction fails, nothing is recorded and the message
 * is delivered again once its claim lapses (at least once).
 */
async function deliver(w: Worker, row: OutboxRow): Promise<void> {
  // A stored row carries the payload its topic was enqueued with (see enqueue).
  const handler = w.deps.handlers[row.topic as Topic] as OutboxHandler<Topic> | undefined;
  const now = w.deps.clock.now();
  try {
    if (!handler) throw new Error(`no handler for ${row.topic}`);
    await recordDelivered(w, row, await handler(row.payload as never));
  } catch (e) {
    try {
      await recordFailure(w, row, e, now);
    } catch (bookkeeping) {
      // Nothing was recorded; the claim lapses and the message is tried again.
      w.deps.log.error(
        { outboxId: row.id, topic: row.topic, err: bookkeeping, delivery: e },
        "outbox could not record a delivery attempt; it will be retried",
      );
    }
  }
}

/** One pass: delivers every message that is due now. Returns how many were attempted. */
async function runOnce(w: Worker): Promise<number> {
  let attempted = 0;
  for (;;) {
    if (w.stopping) return attempted;
    // Each message is claimed in its own short transaction; the delivery itself happens outside
    // any transaction (no network calls while holding locks).
    const claimed = await claimNext(w.deps.db, w.topics, w.deps.clock.now());
    if (!claimed) return attempted;
    attempted++;
    await deliver(w, claimed);
  }
}

function schedule(w: Worker, ms: number): void {
  if (w.stopped) return;
  if (w.timer) clearTimeout(w.timer);
  w.timer = setTimeout(() => void kick(w), ms);
  w.timer.unref();
}

/** Runs a pass now (or right after the current one). */
async function kick(w: Worker): Promise<void> {
  if (w.running) {
    w.again = true;
    return;
  }
  w.running = runOnce(w);
  try {
    await w.running;
  } catch (e) {
    w.deps.log.error({ err: e }, "outbox pass failed");
  } finally {
    w.running = undefined;
  }
  if (w.again && !w.stopped) {
    w.again = false;
    return kick(w);
  }
  schedule(w, 1000);
}

/**
 * Delivers outbox messages at least once: polls (and is woken on new messages), takes the oldest
 * undelivered message of each key that is due, with `FOR UPDATE SKIP LOCKED` so that several
 * instances share the work without delivering one message twice at the same time. A failure is
 * retried with exponential backoff; one failing destination never holds up other keys. Messages
 * survive restarts: they are rows, written in the same transaction as the decision.
 */
export function createOutboxWorker(deps: OutboxDeps) {
  const w: Worker = {
    deps,
    // Each worker takes only the topics it has handlers for: a slow kind of delivery gets its own
    // worker and never holds up the others.
    topics: topicList(Object.keys(deps.handlers)),
    maxAttempts: deps.maxAttempts ?? 12,
    maxBackoffMs: deps.maxBackoffMs ?? 5 * 60_000,
    timer: undefined,
    running: undefined,
    again: false,
    stopped: true,
    stopping: false,
  };
  return {
    start(): void {
      w.stopped = false;
      w.stopping = false;
      schedule(w, 0);
    },
    /** Wakes the worker (new messages were committed). */
    wake(): void {
      if (!w.stopped) void kick(w);
    },
    /** Delivers everything due now and returns how many messages were attempted (for tests and the CLI). */
    runOnce: (): Promise<number> => runOnce(w),
    /**
     * Resolves once nothing due now is waiting or in hand in this process: the pass in flight (a
     * message it claimed is out of runOnce's reach until delivered) is awaited, then passes run
     * until one finds nothing. Returns how many messages were attempted.
     */
    async drain(): Promise<number> {
      let attempted = 0;
      for (;;) {
        await w.running?.catch(() => {});
        const n = await runOnce(w);
        attempted += n;
        if (n === 0 && !w.running) return attempted;
      }
    },
    async stop(): Promise<void> {
      w.stopped = true;
      w.stopping = true;
      if (w.timer) clearTimeout(w.timer);
      await w.running?.catch(() => {});
    },
  };
}

export type OutboxWorker = ReturnType<typeof createOutboxWorker>;

/** Several workers (each with its own topics) driven as one. */
export function combineWorkers(workers: readonly OutboxWorker[]): OutboxWorker {
  return {
    start: () => {
      for (const w of workers) w.start();
    },
    wake: () => {
      for (const w of workers) w.wake();
    },
    runOnce: async () => (await Promise.all(workers.map((w) => w.runOnce()))).reduce((a, b) => a + b, 0),
    drain: async () => (await Promise.all(workers.map((w) => w.drain()))).reduce((a, b) => a + b, 0),
    stop: async () => {
      await Promise.all(workers.map((w) => w.stop()));
    },
  };
}
