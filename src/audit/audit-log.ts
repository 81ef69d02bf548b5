import { asc, eq, sql } from "drizzle-orm";
import type { Clock } from "../clock.js";
import type { Database, Queryable, Tx } from "../db/client.js";
import { auditEvents, auditHead } from "../db/schema.js";
import { AppError } from "../errors.js";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import { type AuditLine, CORE_FIELDS, hashLine } from "./chain.js";

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
  details?: Record<string, unknown>;
}

/** An event with its id and time, not yet placed in the chain. */
interface PendingEvent {
  eventId: string;
  ts: Date;
  input: AuditEventInput;
}

export interface AuditLogOptions {
  database: Database;
  clock: Clock;
  log: Logger;
  /** Most events written in one transaction by the group committer. */
  batchMax?: number;
  /** Most events waiting to be written; beyond it appends fail fast with UNAVAILABLE. */
  queueMax?: number;
}

const CORE = new Set<string>(CORE_FIELDS);

/**
 * The append-only, hash-chained audit log.
 *
 * Two ways in, one chain: `append` queues an event for the group committer, which writes many
 * events per transaction and resolves each caller only after the commit (so an answer is never
 * sent for an unaudited decision); `appendInTx` writes inside a caller's transaction, so that an
 * event commits atomically with the state it describes. Both lock the single `audit_head` row for
 * the rest of their transaction, which is what keeps several instances on one database on one
 * chain with no fork and no gap.
 */
export function createAuditLog(opts: AuditLogOptions) {
  const { database, clock, log } = opts;
  const batchMax = opts.batchMax ?? 1000;
  const queueMax = opts.queueMax ?? 50_000;
  let queue: { event: PendingEvent; resolve: (l: AuditLine) => void; reject: (e: unknown) => void }[] = [];
  let pumping: Promise<void> | undefined;
  let closed = false;

  function prepare(input: AuditEventInput): PendingEvent {
    if (input.details) {
      for (const k of Object.keys(input.details)) {
        if (CORE.has(k)) throw new Error(`audit detail '${k}' would overwrite a core field`);
      }
    }
    return { eventId: newId("evt"), ts: clock.now(), input };
  }

  /** Places events at the head of the chain and inserts them, inside `tx`. */
  async function writeChained(tx: Tx, events: readonly PendingEvent[]): Promise<AuditLine[]> {
    const [head] = await tx.select().from(auditHead).where(eq(auditHead.id, 1)).for("update");
    if (!head) throw new AppError("INTERNAL", "the audit chain head is missing; run butler db migrate");
    let prev = head.hash;
    let seq = head.seq;
    const lines: AuditLine[] = [];
    for (const e of events) {
      const line = toLine(++seq, e, prev);
      prev = line.hash;
      lines.push(line);
    }
    const col = <T>(f: (l: AuditLine) => T) => sql.param(lines.map(f));
    await tx.execute(sql`
      INSERT INTO audit_events
        (seq, event_id, ts, type, agent, project, action, resource, decision, reason, http_status, details, prev_hash, hash)
      SELECT * FROM unnest(
        ${col((l) => l.seq)}::bigint[], ${col((l) => l.event_id)}::text[], ${col((l) => l.ts)}::timestamptz[],
        ${col((l) => l.type)}::text[], ${col((l) => l.agent)}::text[], ${col((l) => l.project)}::text[],
        ${col((l) => l.action)}::text[], ${col((l) => l.resource)}::text[], ${col((l) => l.decision)}::text[],
        ${col((l) => l.reason)}::text[], ${col((l) => l.http_status)}::integer[],
        ${col((l) => JSON.stringify(detailsOf(l)))}::jsonb[], ${col((l) => l.prev_hash)}::text[],
        ${col((l) => l.hash)}::text[])`);
    await tx.update(auditHead).set({ seq, hash: prev }).where(eq(auditHead.id, 1));
    return lines;
  }

  async function pump(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.length <= batchMax ? queue : queue.slice(0, batchMax);
      queue = queue.length <= batchMax ? [] : queue.slice(batchMax);
      try {
        const lines = await database.db.transaction((tx) =>
          writeChained(
            tx,
            batch.map((b) => b.event),
          ),
        );
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(lines[i]!);
      } catch (e) {
        log.error({ err: e, events: batch.length }, "audit batch failed to commit");
        const failure = new AppError(
          "UNAVAILABLE",
          "the audit log could not be written; nothing was decided",
          undefined,
          {
            cause: e,
          },
        );
        for (const b of batch) b.reject(failure);
      }
    }
  }

  function kick() {
    if (pumping) return;
    pumping = pump().finally(() => {
      pumping = undefined;
      if (queue.length > 0) kick();
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
        queue.push({ event, resolve, reject });
        kick();
      });
    },

    /** Appends events inside the caller's transaction; they commit (or roll back) with it. */
    appendInTx(tx: Tx, inputs: readonly AuditEventInput[]): Promise<AuditLine[]> {
      return writeChained(tx, inputs.map(prepare));
    },

    /** Events waiting for the group committer (exported as a metric). */
    depth(): number {
      return queue.length;
    },

    /** Waits until every queued event is committed (or failed), then refuses new appends. */
    async close(): Promise<void> {
      closed = true;
      while (pumping) await pumping;
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

function detailsOf(line: AuditLine): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(line)) if (!CORE.has(k) && v !== undefined) out[k] = v;
  return out;
}

function toLine(seq: number, e: PendingEvent, prevHash: string): AuditLine {
  const i = e.input;
  const body: Record<string, unknown> = {
    ...(i.details ? (clean(i.details) as Record<string, unknown>) : {}),
    seq,
    event_id: e.eventId,
    ts: e.ts.toISOString(),
    type: i.type,
    agent: cleanString(i.agent),
    project: cleanString(i.project),
    action: cleanString(i.action),
    resource: cleanString(i.resource),
    decision: cleanString(i.decision),
    reason: cleanString(i.reason),
    http_status: i.httpStatus ?? null,
  };
  const hash = hashLine(prevHash, body);
  return { ...(body as Omit<AuditLine, "prev_hash" | "hash">), prev_hash: prevHash, hash } as AuditLine;
}

/**
 * PostgreSQL text cannot hold U+0000 and stores unpaired surrogates as U+FFFD, so such strings are
 * mended before hashing: the stored event then re-hashes to exactly what was written.
 */
function cleanString(s: string | null | undefined): string | null {
  if (s === undefined || s === null) return null;
  const wf = s.isWellFormed() ? s : s.toWellFormed();
  return wf.includes("\u0000") ? wf.replaceAll("\u0000", "\uFFFD") : wf;
}

function clean(v: unknown): unknown {
  if (typeof v === "string") return cleanString(v);
  if (Array.isArray(v)) return v.map(clean);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[cleanString(k)!] = clean(x);
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
