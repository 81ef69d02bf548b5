import { and, asc, desc, eq, gt, inArray, isNotNull, lt, type SQL, sql } from "drizzle-orm";
import { rowToLine } from "../audit/audit-log.js";
import { type AuditLine, CORE_FIELDS } from "../audit/chain.js";
import type { Queryable } from "../db/client.js";
import { auditEvents } from "../db/schema.js";
import type { TimelineEvent } from "./html.js";

/** Which audit events one viewer may see and has asked for. */
export interface EventFilter {
  /** Projects the viewer may see; undefined: every project and the system's own events (auditors). */
  projects: readonly string[] | undefined;
  agent?: string | undefined;
  project?: string | undefined;
  /** A type, or a prefix ending in `*` (`access_request.*`). */
  type?: string | undefined;
  /** Events about one grant or request (its id in `grant_id` or `request_id`). */
  about?: string | undefined;
  eventId?: string | undefined;
  afterSeq?: number | undefined;
  beforeSeq?: number | undefined;
}

function where(f: EventFilter): SQL | undefined {
  const c: SQL[] = [];
  if (f.projects !== undefined) {
    if (f.projects.length === 0) return sql`false`;
    c.push(inArray(auditEvents.project, [...f.projects]), isNotNull(auditEvents.project));
  }
  if (f.agent) c.push(eq(auditEvents.agent, f.agent));
  if (f.project) c.push(eq(auditEvents.project, f.project));
  if (f.type) {
    if (f.type.endsWith("*")) c.push(sql`starts_with(${auditEvents.type}, ${f.type.slice(0, -1)})`);
    else c.push(eq(auditEvents.type, f.type));
  }
  if (f.about)
    c.push(
      sql`(${auditEvents.details}->>'grant_id' = ${f.about} or ${auditEvents.details}->>'request_id' = ${f.about})`,
    );
  if (f.eventId) c.push(eq(auditEvents.eventId, f.eventId));
  if (f.afterSeq !== undefined) c.push(gt(auditEvents.seq, f.afterSeq));
  if (f.beforeSeq !== undefined) c.push(lt(auditEvents.seq, f.beforeSeq));
  return c.length ? and(...c) : undefined;
}

/** The core fields of an audit line the dashboard shows: all but the hashes and the HTTP status. */
const SHOWN = CORE_FIELDS.filter(
  (k): k is Exclude<(typeof CORE_FIELDS)[number], "http_status" | "prev_hash" | "hash"> =>
    k !== "http_status" && k !== "prev_hash" && k !== "hash",
);

function toEvent(r: typeof auditEvents.$inferSelect): TimelineEvent {
  const line = rowToLine(r);
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const shown = Object.fromEntries(SHOWN.map((k) => [k, line[k]])) as Pick<AuditLine, (typeof SHOWN)[number]>;
  return { ...shown, request_id: str(line.request_id), grant_id: str(line.grant_id) };
}

/** Events after `afterSeq`, oldest first (the live timeline's next page). */
export async function eventsAfter(db: Queryable, f: EventFilter, limit: number): Promise<TimelineEvent[]> {
  const rows = await db.select().from(auditEvents).where(where(f)).orderBy(asc(auditEvents.seq)).limit(limit);
  return rows.map(toEvent);
}

/** The newest events (before `beforeSeq`), returned oldest first. */
export async function latestEvents(db: Queryable, f: EventFilter, limit: number): Promise<TimelineEvent[]> {
  const rows = await db
    .select()
    .from(auditEvents)
    .where(where(f))
    .orderBy(desc(auditEvents.seq))
    .limit(limit);
  return rows.map(toEvent).reverse();
}

/** The whole lines (for the JSONL export), in order, a page at a time. */
export async function* exportRows(db: Queryable, f: EventFilter) {
  let after = f.afterSeq ?? 0;
  for (;;) {
    const rows = await db
      .select()
      .from(auditEvents)
      .where(where({ ...f, afterSeq: after }))
      .orderBy(asc(auditEvents.seq))
      .limit(1000);
    for (const r of rows) yield r;
    if (rows.length < 1000) return;
    after = rows.at(-1)!.seq;
  }
}
