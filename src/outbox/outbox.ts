import { and, eq, sql } from "drizzle-orm";
import type { AuditDetails, AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import { type Db, rowsOf, type Tx } from "../db/client.js";
import { outbox } from "../db/schema.js";
import type { Logger } from "../logger.js";
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

interface Row {
  id: number | string;
  topic: string;
  key: string;
  payload: Record<string, unknown>;
  attempts: number;
}

/**
 * Delivers outbox messages at least once: polls (and is woken on new messages), takes the oldest
 * undelivered message of each key that is due, with `FOR UPDATE SKIP LOCKED` so that several
 * instances share the work without delivering one message twice at the same time. A failure is
 * retried with exponential backoff; one failing destination never holds up other keys. Messages
 * survive restarts: they are rows, written in the same transaction as the decision.
 */
export function createOutboxWorker(deps: OutboxDeps) {
  const { db, audit, clock, log, handlers } = deps;
  // Each worker takes only the topics it has handlers for: a slow kind of delivery gets its own
  // worker and never holds up the others.
  const topics = sql.join(
    Object.keys(handlers).map((t) => sql`${t}`),
    sql`, `,
  );
  const maxAttempts = deps.maxAttempts ?? 12;
  const maxBackoffMs = deps.maxBackoffMs ?? 5 * 60_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let again = false;
  let stopped = true;
  // Set by stop(): passes end after the message in hand (runOnce alone, without start(), is fine).
  let stopping = false;

  /**
   * Delivers one message, then records the outcome: the row's new state and its audit line are
   * written in ONE transaction, so that a crash between them cannot leave a delivery marked done
   * (or given up) without its line. If that transaction fails, nothing is recorded and the message
   * is delivered again once its claim lapses (at least once).
   */
  async function deliver(row: Row): Promise<void> {
    // A stored row carries the payload its topic was enqueued with (see enqueue).
    const handler = handlers[row.topic as Topic] as OutboxHandler<Topic> | undefined;
    const now = clock.now();
    const id = Number(row.id);
    try {
      if (!handler) throw new Error(`no handler for ${row.topic}`);
      const done = await handler(row.payload as never);
      await db.transaction(async (tx) => {
        await tx
          .update(outbox)
          .set({ deliveredAt: clock.now(), attempts: row.attempts + 1, lastError: null })
          .where(eq(outbox.id, id));
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
    } catch (e) {
      const attempts = row.attempts + 1;
      // Redacted before it is cut, so that a cut can never leave part of a secret behind.
      const message = (deps.redact ?? String)(String((e as Error)?.message ?? e)).slice(0, 500);
      try {
        if (attempts >= maxAttempts) {
          await db.transaction(async (tx) => {
            await tx
              .update(outbox)
              .set({ attempts, failedAt: now, lastError: message })
              .where(eq(outbox.id, id));
            await audit.appendInTx(tx, [
              {
                type: "outbox.delivery_failed",
                reason: message,
                details: { outbox_id: id, topic: row.topic, key: row.key, attempts },
              },
            ]);
          });
          log.error({ outboxId: row.id, topic: row.topic, attempts, err: e }, "outbox message given up");
        } else {
          // The platform's own "retry after" wins over our backoff when it is longer (HTTP 429).
          const asked = e instanceof RetryLater ? e.retryAfterMs : 0;
          const backoff = Math.max(
            Math.min(maxBackoffMs, 1000 * 2 ** (attempts - 1)),
            Number.isFinite(asked) ? Math.min(asked, 3_600_000) : 0,
          );
          await db
            .update(outbox)
            .set({ attempts, nextAttemptAt: new Date(now.getTime() + backoff), lastError: message })
            .where(eq(outbox.id, id));
          log.warn(
            { outboxId: row.id, topic: row.topic, attempts, backoffMs: backoff, err: e },
            "outbox delivery failed; will retry",
          );
        }
      } catch (bookkeeping) {
        // Nothing was recorded; the claim lapses and the message is tried again.
        log.error(
          { outboxId: row.id, topic: row.topic, err: bookkeeping, delivery: e },
          "outbox could not record a delivery attempt; it will be retried",
        );
      }
    }
  }

  /** One pass: delivers every message that is due now. Returns how many were attempted. */
  async function runOnce(): Promise<number> {
    let attempted = 0;
    for (;;) {
      if (stopping) return attempted;
      const now = clock.now();
      // Each message is claimed in its own short transaction; the delivery itself happens outside
      // any transaction (no network calls while holding locks).
      const claimed = await db.transaction(async (tx) => {
        const rows = rowsOf<Row>(
          await tx.execute(sql`
            SELECT o.id, o.topic, o.key, o.payload, o.attempts FROM outbox o
            WHERE o.delivered_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= ${now.toISOString()}
              AND o.topic IN (${topics})
              AND NOT EXISTS (
                SELECT 1 FROM outbox p
                WHERE p.key = o.key AND p.id < o.id AND p.delivered_at IS NULL AND p.failed_at IS NULL)
            ORDER BY o.id
            LIMIT 1
            FOR UPDATE SKIP LOCKED`),
        );
        const row = rows[0];
        if (!row) return undefined;
        // Push the message out of reach for a while so that another instance does not take it
        // while we deliver; a crash then only delays it.
        await tx
          .update(outbox)
          .set({ nextAttemptAt: new Date(now.getTime() + 60_000) })
          .where(and(eq(outbox.id, Number(row.id))));
        return row;
      });
      if (!claimed) return attempted;
      attempted++;
      await deliver(claimed);
    }
  }

  function schedule(ms: number) {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void kick(), ms);
    timer.unref();
  }

  /** Runs a pass now (or right after the current one). */
  async function kick(): Promise<void> {
    if (running) {
      again = true;
      return;
    }
    running = runOnce();
    try {
      await running;
    } catch (e) {
      log.error({ err: e }, "outbox pass failed");
    } finally {
      running = undefined;
    }
    if (again && !stopped) {
      again = false;
      return kick();
    }
    schedule(1000);
  }

  return {
    start(): void {
      stopped = false;
      stopping = false;
      schedule(0);
    },
    /** Wakes the worker (new messages were committed). */
    wake(): void {
      if (!stopped) void kick();
    },
    /** Delivers everything due now and returns how many messages were attempted (for tests and the CLI). */
    runOnce,
    /**
     * Resolves once nothing due now is waiting or in hand in this process: the pass in flight (a
     * message it claimed is out of runOnce's reach until delivered) is awaited, then passes run
     * until one finds nothing. Returns how many messages were attempted.
     */
    async drain(): Promise<number> {
      let attempted = 0;
      for (;;) {
        await running?.catch(() => {});
        const n = await runOnce();
        attempted += n;
        if (n === 0 && !running) return attempted;
      }
    },
    async stop(): Promise<void> {
      stopped = true;
      stopping = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => {});
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
