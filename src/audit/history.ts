import { sql } from "drizzle-orm";
import { type Queryable, rowsOf } from "../db/client.js";
import type { CallGroup } from "../policy/simulate.js";

/** Which audited calls a simulation reads: a project's, from `since`, optionally one agent's or action's. */
export interface HistoryFilter {
  project: string;
  since: Date;
  until?: Date | undefined;
  agent?: string | undefined;
  action?: string | undefined;
}

interface GroupRow {
  agent: string | null;
  action: string | null;
  resource: string | null;
  branch: string | null;
  decision: string | null;
  code: string | null;
  n: number | string;
  last_seq: number | string;
  last_ts: Date | string;
}

/**
 * The project's audited calls (`gateway.allowed` and `gateway.denied` lines) grouped in the
 * database by call, recorded answer and hour, so that a month of history with a million lines
 * reaches the simulation as the few thousand distinct calls it holds.
 */
export async function callGroups(db: Queryable, f: HistoryFilter): Promise<CallGroup[]> {
  const result = await db.execute(sql`
    SELECT agent, action, resource, details->>'branch' AS branch, decision, details->>'deny_code' AS code,
           count(*) AS n, max(seq) AS last_seq, max(ts) AS last_ts
    FROM audit_events
    WHERE project = ${f.project}
      AND type IN ('gateway.allowed', 'gateway.denied')
      AND ts >= ${f.since.toISOString()}
      ${f.until ? sql`AND ts < ${f.until.toISOString()}` : sql``}
      ${f.agent ? sql`AND agent = ${f.agent}` : sql``}
      ${f.action ? sql`AND action = ${f.action}` : sql``}
    GROUP BY agent, action, resource, details->>'branch', decision, details->>'deny_code', date_trunc('hour', ts)`);
  return rowsOf<GroupRow>(result).map((r) => ({
    agent: r.agent ?? "",
    action: r.action ?? "",
    resource: r.resource ?? "",
    branch: r.branch ?? undefined,
    decision: r.decision === "ALLOW" ? "ALLOW" : "DENY",
    code: r.code ?? undefined,
    count: Number(r.n),
    lastSeq: Number(r.last_seq),
    lastTs: new Date(r.last_ts).getTime(),
  }));
}

/** The event ids of audit lines by sequence number. */
export async function eventIdsOf(db: Queryable, seqs: readonly number[]): Promise<Map<number, string>> {
  if (seqs.length === 0) return new Map();
  const result = await db.execute(
    sql`SELECT seq, event_id FROM audit_events WHERE seq IN (${sql.join(
      seqs.map((s) => sql`${s}`),
      sql`, `,
    )})`,
  );
  return new Map(
    rowsOf<{ seq: number | string; event_id: string }>(result).map((r) => [Number(r.seq), r.event_id]),
  );
}
