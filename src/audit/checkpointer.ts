import { and, desc, eq, gt, sql } from "drizzle-orm";
import type { Clock } from "../clock.js";
import type { Database, Queryable } from "../db/client.js";
import { auditEvents, auditHead } from "../db/schema.js";
import type { Logger } from "../logger.js";
import { isoTimestamp } from "../time-format.js";
import type { AuditLog } from "./audit-log.js";
import { CHECKPOINT_TYPE, type Checkpoint, type SigningKey, signCheckpoint } from "./checkpoint.js";

/** Somewhere outside the database that keeps every checkpoint (a file, an HTTP endpoint). */
export interface CheckpointSink {
  /** What it is, for logs (never a secret). */
  readonly name: string;
  /** Hands one checkpoint over. Never rejects: a sink logs its own failures and retries. */
  write(c: Checkpoint): void;
  /** Resolves once everything handed over is written (or given up). */
  idle(): Promise<void>;
  /** Delivers or gives up what is pending, then releases the sink. */
  close(): Promise<void>;
}

export interface CheckpointerOptions {
  database: Database;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  log: Logger;
  key: SigningKey;
  /** A checkpoint once this many events follow the last one… */
  everyEvents: number;
  /** …or once this long has passed since it, if any event followed it. */
  everyMs: number;
  sinks: readonly CheckpointSink[];
}

/** The newest checkpoint event known: its sequence number and when it was signed. */
interface Known {
  seq: number;
  signedAt: number;
}

/**
 * Whether a checkpoint is due. `last` is the newest checkpoint event among the last `everyEvents`
 * events (undefined when there is none there: then `everyEvents` events or more follow the last).
 */
export function checkpointDue(
  headSeq: number,
  last: Known | undefined,
  now: number,
  every: { events: number; ms: number },
): boolean {
  if (headSeq === 0) return false;
  if (!last) return true;
  if (last.seq >= headSeq) return false; // nothing after the newest checkpoint
  return headSeq - last.seq >= every.events || now - last.signedAt >= every.ms;
}

/**
 * Writes signed checkpoints of the chain head: into the log (an `audit.checkpoint` event) and to
 * every sink outside the database.
 *
 * A checkpoint is written in one transaction holding the chain head's row lock (the lock every
 * append takes): the head it signs is the committed head, the checkpoint event is the very next
 * event, and whether one is due is decided from the log itself under that lock. So several
 * instances on one database never write two checkpoints of one head, and the cadence holds
 * across them: whichever instance finds a checkpoint due writes it.
 *
 * Nothing waits for it: appends only nudge it (`noteCommitted`), and the sinks deliver in the
 * background after the commit.
 */
export function createCheckpointer(opts: CheckpointerOptions) {
  const { database, audit, clock, log, key, sinks } = opts;
  const every = { events: opts.everyEvents, ms: opts.everyMs };
  let known: Known | undefined;
  let noted = 0;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  // After a failure, appends do not trigger attempts until this time (the timer still does).
  let quietUntil = 0;

  /** The newest checkpoint event among the last `everyEvents` events up to `headSeq`. */
  async function newest(q: Queryable, headSeq: number): Promise<Known | undefined> {
    const [row] = await q
      .select({ seq: auditEvents.seq, signedAt: sql<string>`${auditEvents.details}->>'signed_at'` })
      .from(auditEvents)
      .where(and(eq(auditEvents.type, CHECKPOINT_TYPE), gt(auditEvents.seq, headSeq - every.events)))
      .orderBy(desc(auditEvents.seq))
      .limit(1);
    if (!row) return undefined;
    const t = Date.parse(row.signedAt);
    return { seq: row.seq, signedAt: Number.isNaN(t) ? 0 : t };
  }

  /** Writes a checkpoint if one is due (or, with `final`, if any event follows the last one). */
  async function attempt(final: boolean): Promise<Checkpoint | undefined> {
    // A look without the lock first: most of the time nothing is due and no writer is held up.
    if (!final) {
      const [head] = await database.db.select().from(auditHead).where(eq(auditHead.id, 1));
      if (!head) return undefined;
      known = await newest(database.db, head.seq);
      if (!checkpointDue(head.seq, known, clock.now().getTime(), every)) return undefined;
    }
    const written = await database.db.transaction(async (tx) => {
      const [head] = await tx.select().from(auditHead).where(eq(auditHead.id, 1)).for("update");
      if (!head) return undefined;
      const last = await newest(tx, head.seq);
      known = last;
      const now = clock.now();
      const due = final
        ? head.seq > 0 && (last === undefined || last.seq < head.seq)
        : checkpointDue(head.seq, last, now.getTime(), every);
      if (!due) return undefined;
      const c = signCheckpoint(key, head, isoTimestamp(now));
      const [line] = await audit.appendInTx(tx, [{ type: CHECKPOINT_TYPE, at: now, details: { ...c } }]);
      return { c, seq: line!.seq, at: now.getTime() };
    });
    if (!written) return undefined;
    known = { seq: written.seq, signedAt: written.at };
    log.info(
      { head_seq: written.c.head_seq, event_seq: written.seq, key_id: key.keyId },
      "audit checkpoint written",
    );
    for (const s of sinks) s.write(written.c);
    return written.c;
  }

  function kick(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    running = attempt(false)
      .then(
        () => undefined,
        (e) => {
          quietUntil = clock.now().getTime() + Math.min(every.ms, 10_000);
          log.error({ err: e }, "audit checkpoint failed; the next one will cover these events");
        },
      )
      .finally(() => {
        running = undefined;
        if (again && !closed) {
          again = false;
          if (known === undefined || noted - known.seq >= every.events) void kick();
        }
      });
    return running;
  }

  return {
    /** Told the sequence number of every committed append: starts a checkpoint when enough followed. */
    noteCommitted(seq: number): void {
      if (seq > noted) noted = seq;
      if (closed || clock.now().getTime() < quietUntil) return;
      if (known !== undefined && seq - known.seq < every.events) return;
      void kick();
    },

    /** The timer: starts a checkpoint when the last one is `everyMs` old and events followed it. */
    tick(): Promise<void> {
      if (closed) return Promise.resolve();
      if (known !== undefined && clock.now().getTime() - known.signedAt < every.ms) return Promise.resolve();
      return kick();
    },

    /** Resolves when no checkpoint is being written and every sink has delivered what it was given. */
    async idle(): Promise<void> {
      while (running) await running;
      await Promise.all(sinks.map((s) => s.idle()));
    },

    /**
     * Stops: writes a last checkpoint of whatever followed the previous one (so that a clean
     * shutdown leaves no unanchored tail), then delivers to the sinks and closes them.
     */
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      while (running) await running;
      await attempt(true).catch((e) => log.error({ err: e }, "the final audit checkpoint failed"));
      await Promise.all(sinks.map((s) => s.close()));
    },
  };
}

export type Checkpointer = ReturnType<typeof createCheckpointer>;
