import { createHash } from "node:crypto";
import { asc, eq, sql } from "drizzle-orm";
import type { Clock } from "../clock.js";
import { type Database, type Queryable, rowsOf, type Tx } from "../db/client.js";
import { auditEvents, auditHead } from "../db/schema.js";
import { AppError, asAppError } from "../errors.js";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import { isoTimestamp } from "../time-format.js";
import { type AuditLine, CORE_FIELDS, canonicalJson } from "./chain.js";

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

/**
 * An event with its id and time, not yet placed in the chain. Everything but its sequence number
 * and hashes is fixed, so its canonical JSON is prepared up to the `seq` field: chaining it is then
 * one string concatenation and one SHA-256.
 */
interface PendingEvent {
  eventId: string;
  /** The line without seq, prev_hash and hash. */
  base: Record<string, unknown>;
  /** Canonical JSON of `base` split where `"seq"` sorts in. */
  canonBefore: string;
  canonAfter: string;
  /** The event's columns (but seq and hashes) as the tail of a JSON object, for the insert. */
  rowJson: string;
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

const CORE = new Set<string>(CORE_FIELDS);

type Head = { seq: number; hash: string };
type Waiter = {
  event: PendingEvent;
  resolve: (l: AuditLine) => void;
  reject: (e: unknown) => void;
  attempts: number;
};

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
 */
export function createAuditLog(opts: AuditLogOptions) {
  const { database, clock, log } = opts;
  const written = (lines: readonly AuditLine[]) => {
    if (!opts.onWritten || lines.length === 0) return;
    try {
      opts.onWritten(lines.at(-1)!.seq);
    } catch (e) {
      // A listener's failure is not the write's: the events are committed (or will be).
      log.error({ err: e }, "audit write listener failed");
    }
  };
  const redact = opts.redact ?? ((s: string) => s);
  const redactKnown = opts.redactKnown ?? ((s: string) => s);
  const batchMax = opts.batchMax ?? 1000;
  const queueMax = opts.queueMax ?? 50_000;
  const optimisticAttempts = 4;
  let queue: Waiter[] = [];
  let writing = false;
  let closed = false;
  let idle: (() => void)[] = [];
  // The head as this instance last wrote it. Undefined when unknown (at start, and after a batch
  // failed or lost a race to another writer): the next batch reads the real head first.
  let tail: Head | undefined;

  function prepare(input: AuditEventInput): PendingEvent {
    const details = input.details ? (clean(input.details, redactKnown) as Record<string, unknown>) : {};
    for (const k of Object.keys(details)) {
      if (CORE.has(k)) throw new Error(`audit detail '${k}' would overwrite a core field`);
    }
    const eventId = newId("evt");
    const base: Record<string, unknown> = {
      ...details,
      event_id: eventId,
      ts: isoTimestamp(input.at ?? clock.now()),
      type: input.type,
      agent: cleanString(input.agent, redactKnown),
      project: cleanString(input.project, redactKnown),
      action: cleanString(input.action, redactKnown),
      resource: cleanString(input.resource, redactKnown),
      decision: cleanString(input.decision, redactKnown),
      reason: cleanString(input.reason, redact),
      http_status: input.httpStatus ?? null,
    };
    const before: string[] = [];
    const after: string[] = [];
    for (const k of Object.keys(base).sort()) {
      (k < "seq" ? before : after).push(`${JSON.stringify(k)}:${canonicalJson(base[k])}`);
    }
    return {
      eventId,
      base,
      canonBefore: before.length ? `{${before.join(",")},` : "{",
      canonAfter: after.length ? `,${after.join(",")}}` : "}",
      rowJson: `${JSON.stringify({
        e: eventId,
        ts: base.ts,
        ty: base.type,
        ag: base.agent,
        pr: base.project,
        ac: base.action,
        re: base.resource,
        de: base.decision,
        rs: base.reason,
        hs: base.http_status,
        dt: details,
      }).slice(1)}`,
    };
  }

  /** Chains events after `head`: sequence numbers, prev_hash and hash (see docs/audit.md). */
  function chainAfter(head: Head, events: readonly PendingEvent[]): AuditLine[] {
    let prev = head.hash;
    let seq = head.seq;
    const lines: AuditLine[] = [];
    for (const e of events) {
      seq++;
      const hash = createHash("sha256")
        .update(`${prev}${e.canonBefore}"seq":${seq}${e.canonAfter}`)
        .digest("hex");
      lines.push({ ...e.base, seq, prev_hash: prev, hash } as AuditLine);
      prev = hash;
    }
    return lines;
  }

  /**
   * `SELECT` of the lines as rows from one JSON parameter: each event's row JSON was prepared when
   * it was queued, so a batch costs one string join here and one JSON parse in the database.
   */
  function rowsSql(lines: readonly AuditLine[], events: readonly PendingEvent[]) {
    const rows = lines.map(
      (l, i) => `{"s":${l.seq},"p":"${l.prev_hash}","h":"${l.hash}",${events[i]!.rowJson}`,
    );
    return sql`SELECT r.s, r.e, r.ts, r.ty, r.ag, r.pr, r.ac, r.re, r.de, r.rs, r.hs, r.dt, r.p, r.h
      FROM json_to_recordset(${`[${rows.join(",")}]`}::json) AS r(
        s bigint, e text, ts timestamptz, ty text, ag text, pr text, ac text, re text, de text, rs text,
        hs integer, dt jsonb, p text, h text)`;
  }

  const COLUMNS = sql.raw(
    "(seq, event_id, ts, type, agent, project, action, resource, decision, reason, http_status, details, prev_hash, hash)",
  );

  /** Places events at the head of the chain and inserts them, inside `tx`, holding the head's row lock. */
  async function writeChained(tx: Tx, events: readonly PendingEvent[]): Promise<AuditLine[]> {
    const [head] = await tx.select().from(auditHead).where(eq(auditHead.id, 1)).for("update");
    if (!head) throw new AppError("INTERNAL", "the audit chain head is missing; run butler db migrate");
    const lines = chainAfter(head, events);
    const last = lines.at(-1)!;
    await tx.execute(sql`INSERT INTO audit_events ${COLUMNS} ${rowsSql(lines, events)}`);
    await tx.update(auditHead).set({ seq: last.seq, hash: last.hash }).where(eq(auditHead.id, 1));
    return lines;
  }

  /**
   * One batch of the group committer, in one statement (one round trip): move the head only if it
   * is where `head` says, and insert the events only if it was moved. The UPDATE takes the head's
   * row lock, so a concurrent writer waits for it and then re-checks the condition. If the head is
   * elsewhere (another instance or an appendInTx moved it), nothing is written and the batch is
   * retried after the real head is read; after a few lost races it takes the locking path.
   */
  async function sendBatch(batch: Waiter[]): Promise<void> {
    const events = batch.map((w) => w.event);
    try {
      if (batch[0]!.attempts >= optimisticAttempts) {
        const lines = await database.db.transaction((tx) => writeChained(tx, events));
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(lines[i]!);
        written(lines);
        return;
      }
      const head = tail ?? (await readHead(database.db));
      const lines = chainAfter(head, events);
      const last = lines.at(-1)!;
      tail = { seq: last.seq, hash: last.hash };
      const result = await database.db.execute(sql`
        WITH moved AS (
          UPDATE audit_head SET seq = ${last.seq}, hash = ${last.hash}
          WHERE id = 1 AND seq = ${head.seq} AND hash = ${head.hash}
          RETURNING 1
        )
        , inserted AS (
          INSERT INTO audit_events ${COLUMNS}
          SELECT r.* FROM (${rowsSql(lines, events)}) AS r WHERE EXISTS (SELECT 1 FROM moved)
          RETURNING 1
        )
        SELECT count(*)::int AS n FROM inserted`);
      if (rowsOf<{ n: number }>(result)[0]?.n === lines.length) {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(lines[i]!);
        written(lines);
        return;
      }
      // Nothing was written: retry these events first, from the real head.
      tail = undefined;
      for (const w of batch) w.attempts++;
      queue = [...batch, ...queue];
    } catch (e) {
      // Whether a failed statement committed cannot be known, so its events are not retried:
      // their callers are refused (fail closed) and the next batch starts from the real head.
      tail = undefined;
      log.error({ err: e, events: batch.length }, "audit batch failed to commit");
      const failure = new AppError(
        "UNAVAILABLE",
        "the audit log could not be written; nothing was decided",
        undefined,
        {
          cause: e,
        },
      );
      for (const w of batch) w.reject(failure);
      // The database cannot be reached: the events queued meanwhile would only wait for the next
      // statement to time out in turn. They are refused now (503: try again), so that no caller
      // waits more than about two statement timeouts.
      if (asAppError(e)?.code === "UNAVAILABLE") {
        const waiting = queue;
        queue = [];
        for (const w of waiting) w.reject(failure);
      }
    }
  }

  /** Writes the queued events, a batch at a time, until the queue is empty. */
  function kick(): void {
    if (writing || queue.length === 0) return;
    writing = true;
    const batch = queue.length <= batchMax ? queue : queue.slice(0, batchMax);
    queue = queue.length <= batchMax ? [] : queue.slice(batchMax);
    void sendBatch(batch).finally(() => {
      writing = false;
      kick();
      if (!writing && queue.length === 0) {
        for (const r of idle) r();
        idle = [];
      }
    });
  }

  return {
    /** Appends one event; resolves with its line once it is committed. */
    append(input: AuditEventInput): Promise<AuditLine> {
      if (closed) return Promise.reject(new AppError("UNAVAILABLE", "the server is shutting down"));
      if (queue.length >= queueMax) {
        return Promise.reject(new AppError("UNAVAILABLE", "the audit log is overloaded; try again shortly"));
      }
      let event: PendingEvent;
      try {
        event = prepare(input);
      } catch (e) {
        return Promise.reject(e);
      }
      return new Promise<AuditLine>((resolve, reject) => {
        queue.push({ event, resolve, reject, attempts: 0 });
        kick();
      });
    },

    /** Appends events inside the caller's transaction; they commit (or roll back) with it. */
    async appendInTx(tx: Tx, inputs: readonly AuditEventInput[]): Promise<AuditLine[]> {
      const lines = await writeChained(tx, inputs.map(prepare));
      written(lines);
      return lines;
    },

    /** Events waiting for the group committer (exported as a metric). */
    depth(): number {
      return queue.length;
    },

    /** Waits until every queued event is committed (or failed), then refuses new appends. */
    async close(): Promise<void> {
      closed = true;
      if (!writing && queue.length === 0) return;
      await new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

/** Field names are Butler's own: they are mended like any text but not redacted. */
const keep = (s: string) => s;

/**
 * PostgreSQL text cannot hold U+0000 and stores unpaired surrogates as U+FFFD, so such strings are
 * mended before hashing: the stored event then re-hashes to exactly what was written. Secrets are
 * redacted at the same point, so what is hashed is what is stored.
 */
function cleanString(s: string | null | undefined, redact: (s: string) => string): string | null {
  if (s === undefined || s === null) return null;
  const wf = s.isWellFormed() ? s : s.toWellFormed();
  return redact(wf.includes("\u0000") ? wf.replaceAll("\u0000", "\uFFFD") : wf);
}

function clean(v: unknown, redact: (s: string) => string): unknown {
  if (typeof v === "string") return cleanString(v, redact);
  if (Array.isArray(v)) return v.map((x) => clean(x, redact));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v))
      if (x !== undefined) out[cleanString(k, keep)!] = clean(x, redact);
    return out;
  }
  if (typeof v === "number" && !Number.isFinite(v)) return null;
  return v;
}

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

export function rowToLine(r: typeof auditEvents.$inferSelect): AuditLine {
  return {
    ...r.details,
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
}

/** The current head of the chain. */
export async function readHead(db: Queryable): Promise<{ seq: number; hash: string }> {
  const [head] = await db.select().from(auditHead).where(eq(auditHead.id, 1));
  if (!head) throw new AppError("INTERNAL", "the audit chain head is missing; run butler db migrate");
  return { seq: head.seq, hash: head.hash };
}
