import { asc, sql } from "drizzle-orm";
import type { Clock } from "../clock.js";
import type { AuditDurability } from "../config.js";
import type { Database, Queryable, Tx } from "../db/client.js";
import { auditEvents } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { AuditLine, CORE_FIELDS } from "./chain.js";
import { type PendingEvent, prepare, withDetails, writeChained } from "./event-write.js";
import { createGroupCommitter } from "./group-commit.js";

export { readHead } from "./event-write.js";

/**
 * An event's own fields, exported at the top level of its line: any name but a core field's
 * (`reason` is the event's `reason`, not a detail). Naming a core field here does not compile.
 */
export type AuditDetails = Record<string, unknown> & {
  readonly [K in (typeof CORE_FIELDS)[number]]?: never;
};

/** What a caller records; the log adds the id, time, sequence number and hashes. */
export interface AuditEventInput {
  /** Dotted, past tense: `gateway.denied`, `policy.loaded`, `agent_token.created`. */
  type: string;
  agent?: string | null;
  project?: string | null;
  action?: string | null;
  resource?: string | null;
  decision?: string | null;
  reason?: string | null;
  httpStatus?: number | null;
  /** Further fields, exported at the top level of the line; they may not reuse a core field name. */
  details?: AuditDetails;
  /** When it happened, if the caller already read the clock (default: now). */
  at?: Date;
}

export interface AuditLogOptions {
  database: Database;
  clock: Clock;
  log: Logger;
  /** Most events written in one transaction by the group committer. */
  batchMax?: number;
  /** Most events waiting to be written; beyond it appends fail fast with UNAVAILABLE. */
  queueMax?: number;
  /**
   * Which appended events may be answered before their commit reaches the disk (see
   * `AuditDurability`; default `sync`: none). PostgreSQL only.
   */
  durability?: AuditDurability;
  /**
   * Told the sequence number of the last event of every write (the checkpointer counts events with
   * it). For `appendInTx` it is told before the caller's transaction commits: a hint, not a fact.
   */
  onWritten?: (seq: number) => void;
  /** Takes secrets and credential-looking URL parts out of the event's `reason` (where error texts go) before it is hashed. */
  redact?: (text: string) => string;
  /**
   * Takes only known secrets out of the other texts (names, resources, details), which must stay
   * as written to be matched later: credential-looking URL parts there are the agent's own data.
   */
  redactKnown?: (text: string) => string;
}

/**
 * The append-only, hash-chained audit log.
 *
 * Two ways in, one chain:
 * - `append` queues an event for the group committer, which writes many events per statement and
 *   resolves each caller only after the commit, so an answer is never sent for an unaudited
 *   decision. One batch is written at a time: every event that arrives while it commits goes into
 *   the next one. (Sending the next batch before the previous one commits was measured to be
 *   slower: the head's row lock serialises the commits anyway, and batches get smaller.)
 * - `appendInTx` writes inside a caller's transaction, so an event commits atomically with the
 *   state it describes. It locks the `audit_head` row for the rest of that transaction.
 * Every write moves the single `audit_head` row under its row lock, which is what keeps several
 * instances on one database on one chain with no fork and no gap.
 *
 * With `durability` other than `sync`, a batch made only of events that may wait for the disk
 * (DENY decisions, or every event) commits with `synchronous_commit = off`: PostgreSQL answers
 * the commit before flushing it. Its WAL is written in order, and every later synchronous commit
 * flushes everything before it, so a crash of the database can lose only the newest lines, a
 * suffix of the chain. `appendInTx` always commits with its caller's transaction, synchronously.
 */
export function createAuditLog(opts: AuditLogOptions) {
  const { clock, log } = opts;
  const written = (lines: readonly AuditLine[]) => {
    if (!opts.onWritten || lines.length === 0) return;
    try {
      opts.onWritten(lines.at(-1)!.seq);
    } catch (e) {
      // A listener's failure is not the write's: the events are committed (or will be).
      log.error({ err: e }, "audit write listener failed");
    }
  };
  const redactors = {
    redact: opts.redact ?? ((s: string) => s),
    redactKnown: opts.redactKnown ?? ((s: string) => s),
  };
  const toEvent = (input: AuditEventInput) => prepare(input, () => clock.now(), redactors);
  const queueMax = opts.queueMax ?? 50_000;
  const durability = opts.durability ?? "sync";
  if (durability !== "sync" && opts.database.kind !== "postgres")
    throw new Error(
      `audit durability ${durability} needs PostgreSQL; the embedded database commits every line synchronously`,
    );
  /** Whether an event's answer must wait for its commit to reach the disk. */
  const mustFlush =
    durability === "sync"
      ? () => true
      : durability === "async"
        ? () => false
        : (input: AuditEventInput) => input.decision !== "DENY";
  const committer = createGroupCommitter({
    database: opts.database,
    log,
    batchMax: opts.batchMax ?? 1000,
    written,
  });
  let closed = false;
  /** Why an append would be refused now, if it would. */
  const refusal = (): AppError | undefined =>
    closed
      ? new AppError("UNAVAILABLE", "the server is shutting down")
      : committer.depth() >= queueMax
        ? new AppError("UNAVAILABLE", "the audit log is overloaded; try again shortly")
        : undefined;

  return {
    /**
     * Appends one event; resolves with its line once it is committed. With `durable`, the answer
     * waits for the disk flush whatever AUDIT_DURABILITY says: for a line that must be on disk
     * before something outside happens (a provider write's decision, before the call goes out).
     */
    append(input: AuditEventInput, opts?: { durable?: boolean }): Promise<AuditLine> {
      const refused = refusal();
      if (refused) return Promise.reject(refused);
      let event: PendingEvent;
      try {
        event = toEvent(input);
      } catch (e) {
        return Promise.reject(e);
      }
      return committer.enqueue(event, opts?.durable === true || mustFlush(input));
    },

    /**
     * Throws what `append` would refuse with now (closing, overloaded): checked before something
     * is done whose lines are written afterwards (a read sent before its pair is committed).
     */
    assertAccepting(): void {
      const refused = refusal();
      if (refused) throw refused;
    },

    /**
     * Appends two events together, the second made from the first's event id (an outcome naming
     * its decision): both go into one batch of the group committer, so one commit writes both.
     * Resolves with both lines once both are committed; rejects if either is not.
     */
    async appendPair(
      first: AuditEventInput,
      second: (firstEventId: string) => AuditEventInput,
    ): Promise<[AuditLine, AuditLine]> {
      const refused = refusal();
      if (refused) throw refused;
      const a = toEvent(first);
      const then = second(a.eventId);
      const [x, y] = await committer.enqueueAll([
        { event: a, flush: mustFlush(first) },
        { event: toEvent(then), flush: mustFlush(then) },
      ]);
      return [x!, y!];
    },

    /** Appends events inside the caller's transaction; they commit (or roll back) with it. */
    async appendInTx(tx: Tx, inputs: readonly AuditEventInput[]): Promise<AuditLine[]> {
      const lines = await writeChained(tx, inputs.map(toEvent));
      written(lines);
      return lines;
    },

    /** Which appended events may be answered before their commit reaches the disk. */
    durability,

    /** Events waiting for the group committer (exported as a metric). */
    depth(): number {
      return committer.depth();
    },

    /** Waits until every queued event is committed (or failed), then refuses new appends. */
    async close(): Promise<void> {
      closed = true;
      await committer.idle();
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

/** Reads stored events back as lines, in sequence order, a page at a time. */
export async function* readLines(
  db: Queryable,
  filter: { afterSeq?: number; agent?: string; project?: string; since?: Date; pageSize?: number } = {},
): AsyncGenerator<AuditLine> {
  const pageSize = filter.pageSize ?? 1000;
  let after = filter.afterSeq ?? 0;
  for (;;) {
    const conds = [sql`${auditEvents.seq} > ${after}`];
    if (filter.agent !== undefined) conds.push(sql`${auditEvents.agent} = ${filter.agent}`);
    if (filter.project !== undefined) conds.push(sql`${auditEvents.project} = ${filter.project}`);
    if (filter.since !== undefined) conds.push(sql`${auditEvents.ts} >= ${filter.since.toISOString()}`);
    const rows = await db
      .select()
      .from(auditEvents)
      .where(sql.join(conds, sql` AND `))
      .orderBy(asc(auditEvents.seq))
      .limit(pageSize);
    for (const r of rows) yield rowToLine(r);
    if (rows.length < pageSize) return;
    after = rows.at(-1)!.seq;
  }
}

/** A stored row as its line (built field by field: see lineOf in event-write.ts for why). */
export function rowToLine(r: typeof auditEvents.$inferSelect): AuditLine {
  const line: AuditLine = {
    seq: r.seq,
    event_id: r.eventId,
    ts: r.ts.toISOString(),
    type: r.type,
    agent: r.agent,
    project: r.project,
    action: r.action,
    resource: r.resource,
    decision: r.decision,
    reason: r.reason,
    http_status: r.httpStatus,
    prev_hash: r.prevHash,
    hash: r.hash,
  };
  return withDetails(line, r.details as Record<string, unknown> | null);
}
