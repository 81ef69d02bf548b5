import { createHash } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import type { Queryable, Tx } from "../db/client.js";
import { auditHead } from "../db/schema.js";
import { AppError } from "../errors.js";
import { newId } from "../ids.js";
import { isoTimestamp } from "../time-format.js";
import type { AuditEventInput } from "./audit-log.js";
import { type AuditLine, CORE_FIELDS, canonicalJson } from "./chain.js";

/**
 * Turning a caller's event into a chained line and a row: preparing it (id, time, cleaning,
 * canonical JSON), chaining a batch after a head, and the SQL that inserts the batch.
 */

/**
 * An event with its id and time, not yet placed in the chain. Everything but its sequence number
 * and hashes is fixed, so its canonical JSON is prepared up to the `seq` field: chaining it is then
 * one string concatenation and one SHA-256.
 */
export interface PendingEvent {
  eventId: string;
  /** The line's core fields but seq and the hashes, cleaned. */
  core: EventCore;
  /** The event's own details, cleaned, without undefined values. */
  details: Record<string, unknown>;
  /** Canonical JSON of the line without seq and hashes, split where `"seq"` sorts in. */
  canonBefore: string;
  canonAfter: string;
  /** The event's columns (but seq and hashes) as the tail of a JSON object, for the insert. */
  rowJson: string;
}

/** The core fields of a line but its place in the chain (seq, prev_hash, hash). */
type EventCore = Omit<Pick<AuditLine, (typeof CORE_FIELDS)[number]>, "seq" | "prev_hash" | "hash">;

export type Head = { seq: number; hash: string };

/** How texts are cleaned before they are hashed: `reason` with `redact`, the rest with `redactKnown`. */
interface Redactors {
  redact: (text: string) => string;
  redactKnown: (text: string) => string;
}

const CORE = new Set<string>(CORE_FIELDS);
/** The core fields a prepared event holds (all but seq, prev_hash and hash), in sorted order. */
const PREPARED_CORE = (
  Object.keys({
    event_id: 0,
    ts: 0,
    type: 0,
    agent: 0,
    project: 0,
    action: 0,
    resource: 0,
    decision: 0,
    reason: 0,
    http_status: 0,
  } satisfies Record<keyof EventCore, 0>) as (keyof EventCore)[]
).sort();

/**
 * Cleans the event, gives it an id and time, and writes its canonical JSON around `seq` and its
 * row. The core fields have a fixed set of names, so the sorted order of the line's keys is a
 * merge of those with the sorted detail keys; each value is serialised once and serves both the
 * hash's canonical JSON and the row (jsonb keeps no key order).
 */
export function prepare(input: AuditEventInput, now: () => Date, r: Redactors): PendingEvent {
  const details: Record<string, unknown> = {};
  const detailKeys: string[] = [];
  if (input.details) {
    for (const [key, value] of Object.entries(input.details)) {
      if (value === undefined) continue;
      const k = cleanString(key, keep)!;
      if (CORE.has(k)) throw new Error(`audit detail '${k}' would overwrite a core field`);
      if (!Object.hasOwn(details, k)) detailKeys.push(k);
      setOwn(details, k, clean(value, r.redactKnown));
    }
    detailKeys.sort();
  }
  const eventId = newId("evt");
  const core: EventCore = {
    event_id: eventId,
    ts: isoTimestamp(input.at ?? now()),
    type: input.type,
    agent: cleanString(input.agent, r.redactKnown),
    project: cleanString(input.project, r.redactKnown),
    action: cleanString(input.action, r.redactKnown),
    resource: cleanString(input.resource, r.redactKnown),
    decision: cleanString(input.decision, r.redactKnown),
    reason: cleanString(input.reason, r.redact),
    http_status: input.httpStatus ?? null,
  };
  const col = {} as Record<keyof EventCore, string>;
  const before: string[] = [];
  const after: string[] = [];
  const dt: string[] = [];
  let i = 0;
  let j = 0;
  while (i < PREPARED_CORE.length || j < detailKeys.length) {
    const coreNext =
      j === detailKeys.length || (i < PREPARED_CORE.length && PREPARED_CORE[i]! < detailKeys[j]!);
    const k = coreNext ? PREPARED_CORE[i++]! : detailKeys[j++]!;
    const value = canonicalJson(coreNext ? core[k as keyof EventCore] : details[k]);
    const member = `${quotedKey(k)}:${value}`;
    (k < "seq" ? before : after).push(member);
    if (coreNext) col[k as keyof EventCore] = value;
    else dt.push(member);
  }
  return {
    eventId,
    core,
    details,
    canonBefore: before.length ? `{${before.join(",")},` : "{",
    canonAfter: after.length ? `,${after.join(",")}}` : "}",
    rowJson: `"e":${col.event_id},"ts":${col.ts},"ty":${col.type},"ag":${col.agent},"pr":${col.project},"ac":${col.action},"re":${col.resource},"de":${col.decision},"rs":${col.reason},"hs":${col.http_status},"dt":{${dt.join(",")}}}`,
  };
}

/** Keys as JSON strings, kept for the names events use again and again (a bounded set). */
const QUOTED = new Map<string, string>();
function quotedKey(k: string): string {
  let q = QUOTED.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (QUOTED.size < 1000) QUOTED.set(k, q);
  }
  return q;
}

/** Chains events after `head`: sequence numbers, prev_hash and hash (see docs/audit.md). */
export function chainAfter(head: Head, events: readonly PendingEvent[]): AuditLine[] {
  let prev = head.hash;
  let seq = head.seq;
  const lines: AuditLine[] = [];
  for (const e of events) {
    seq++;
    const hash = createHash("sha256")
      .update(`${prev}${e.canonBefore}"seq":${seq}${e.canonAfter}`)
      .digest("hex");
    lines.push(lineOf(e, seq, prev, hash));
    prev = hash;
  }
  return lines;
}

/**
 * The line as an object: core fields, then the details. Built property by property: an object
 * literal that begins with a spread and adds fields after it costs V8 (Node 20) about a
 * microsecond per added field, which on the decision path was most of the audit line's cost.
 */
function lineOf(e: PendingEvent, seq: number, prev: string, hash: string): AuditLine {
  const c = e.core;
  const line: AuditLine = {
    seq,
    event_id: c.event_id,
    ts: c.ts,
    type: c.type,
    agent: c.agent,
    project: c.project,
    action: c.action,
    resource: c.resource,
    decision: c.decision,
    reason: c.reason,
    http_status: c.http_status,
    prev_hash: prev,
    hash,
  };
  return withDetails(line, e.details);
}

/**
 * `line` with the details' fields added as its own (a field named `__proto__` too). Details never
 * name a core field (prepare refuses them); a stored row whose details do was changed by hand, and
 * its detail then shows, and is hashed, in place of the column: the line no longer verifies,
 * where letting the column win would hide the change from every reader and verifier.
 */
export function withDetails(line: AuditLine, details: Record<string, unknown> | null | undefined): AuditLine {
  if (details === null || details === undefined) return line;
  for (const k of Object.keys(details)) setOwn(line, k, details[k]);
  return line;
}

/**
 * `SELECT` of the lines as rows from one JSON parameter: each event's row JSON was prepared when
 * it was queued, so a batch costs one string join here and one JSON parse in the database.
 */
export function rowsSql(lines: readonly AuditLine[], events: readonly PendingEvent[]) {
  return sql`SELECT ${sql.raw(ROW_FIELDS)} FROM json_to_recordset(${rowsJson(lines, events)}::json) AS ${sql.raw(ROW_TYPES)}`;
}

/** The batch's rows as the one JSON array parameter `json_to_recordset` reads. */
export function rowsJson(lines: readonly AuditLine[], events: readonly PendingEvent[]): string {
  const rows = lines.map(
    (l, i) => `{"s":${l.seq},"p":"${l.prev_hash}","h":"${l.hash}",${events[i]!.rowJson}`,
  );
  return `[${rows.join(",")}]`;
}

/** What `json_to_recordset` makes of `rowsJson`, in the order of `COLUMNS`. */
export const ROW_FIELDS = "r.s, r.e, r.ts, r.ty, r.ag, r.pr, r.ac, r.re, r.de, r.rs, r.hs, r.dt, r.p, r.h";
export const ROW_TYPES =
  "r(s bigint, e text, ts timestamptz, ty text, ag text, pr text, ac text, re text, de text, rs text, hs integer, dt jsonb, p text, h text)";

export const COLUMN_LIST =
  "(seq, event_id, ts, type, agent, project, action, resource, decision, reason, http_status, details, prev_hash, hash)";
export const COLUMNS = sql.raw(COLUMN_LIST);

/** Places events at the head of the chain and inserts them, inside `tx`, holding the head's row lock. */
export async function writeChained(tx: Tx, events: readonly PendingEvent[]): Promise<AuditLine[]> {
  const [head] = await tx.select().from(auditHead).where(eq(auditHead.id, 1)).for("update");
  if (!head) throw new AppError("INTERNAL", "the audit chain head is missing; run butler db migrate");
  const lines = chainAfter(head, events);
  const last = lines.at(-1)!;
  await tx.execute(sql`INSERT INTO audit_events ${COLUMNS} ${rowsSql(lines, events)}`);
  await tx.update(auditHead).set({ seq: last.seq, hash: last.hash }).where(eq(auditHead.id, 1));
  return lines;
}

/** The current head of the chain. */
export async function readHead(db: Queryable): Promise<Head> {
  const [head] = await db.select().from(auditHead).where(eq(auditHead.id, 1));
  if (!head) throw new AppError("INTERNAL", "the audit chain head is missing; run butler db migrate");
  return { seq: head.seq, hash: head.hash };
}

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

/** `o[k] = v` as an own property, also for `__proto__` (which assignment would take as the prototype). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__")
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

function clean(v: unknown, redact: (s: string) => string): unknown {
  if (typeof v === "string") return cleanString(v, redact);
  if (Array.isArray(v)) return v.map((x) => clean(x, redact));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v))
      if (x !== undefined) setOwn(out, cleanString(k, keep)!, clean(x, redact));
    return out;
  }
  if (typeof v === "number" && !Number.isFinite(v)) return null;
  return v;
}
