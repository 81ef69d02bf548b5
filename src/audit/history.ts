import { sql } from "drizzle-orm";
import { type Queryable, rowsOf } from "../db/client.js";
import type { CompiledProject } from "../policy/compile.js";
import { type CallGroup, type Simulation, simulate, spansChange } from "../policy/simulate.js";

/** Which audited calls a simulation reads: a project's, from `since`, optionally one agent's or action's. */
export interface HistoryFilter {
  project: string;
  since: Date;
  until?: Date | undefined;
  agent?: string | undefined;
  action?: string | undefined;
}

interface GroupRow {
  first_ts: Date | string;
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
 * database by call and recorded answer (`hourly`: and by hour, for the calls named in `only`), so
 * that a month of history with a million lines reaches the simulation as the distinct calls it holds.
 */
export async function callGroups(
  db: Queryable,
  f: HistoryFilter,
  hourly?: readonly { agent: string; action: string; resource: string }[],
): Promise<CallGroup[]> {
  if (hourly?.length === 0) return [];
  const only = hourly
    ? sql`AND (agent, action, resource) IN (${sql.join(
        hourly.map((c) => sql`(${c.agent}, ${c.action}, ${c.resource})`),
        sql`, `,
      )})`
    : sql``;
  const query = sql`
    SELECT agent, action, resource, details->>'branch' AS branch, decision, details->>'deny_code' AS code,
           count(*) AS n, max(seq) AS last_seq, max(ts) AS last_ts, min(ts) AS first_ts
    FROM audit_events
    WHERE project = ${f.project}
      AND type IN ('gateway.allowed', 'gateway.denied')
      AND ts >= ${f.since.toISOString()}
      ${f.until ? sql`AND ts < ${f.until.toISOString()}` : sql``}
      ${f.agent ? sql`AND agent = ${f.agent}` : sql``}
      ${f.action ? sql`AND action = ${f.action}` : sql``}
      ${only}
    GROUP BY agent, action, resource, details->>'branch', decision, details->>'deny_code'
      ${hourly ? sql`, date_trunc('hour', ts)` : sql``}`;
  const result = await db.transaction(async (tx) => {
    // Grouped in memory (a hash table of the distinct calls, a few MB for a month of a busy
    // project) rather than by sorting every line: the planner picks the sort when it guesses many
    // groups, which costs several times more on the embedded database.
    await tx.execute(sql`SET LOCAL work_mem = '64MB'`);
    await tx.execute(sql`SET LOCAL enable_sort = off`);
    const rows = await tx.execute(query);
    // Within a caller's transaction (a savepoint here), the settings would outlive this query.
    await tx.execute(sql`RESET work_mem`);
    await tx.execute(sql`RESET enable_sort`);
    return rows;
  });
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
    firstTs: new Date(r.first_ts).getTime(),
  }));
}

/**
 * `simulate` over the project's history: the calls grouped over the whole window, and those whose
 * answer changed within it (a grant expired) grouped again by hour and decided per hour.
 */
export async function simulateHistory(
  db: Queryable,
  before: CompiledProject,
  after: CompiledProject,
  f: HistoryFilter,
): Promise<Simulation> {
  const groups = await callGroups(db, f);
  const whole = groups.filter((g) => !spansChange(before, after, g));
  const split = groups.filter((g) => spansChange(before, after, g));
  const calls = [...new Map(split.map((g) => [JSON.stringify([g.agent, g.action, g.resource]), g])).values()];
  const hourly: CallGroup[] = [];
  for (let i = 0; i < calls.length; i += 500)
    hourly.push(...(await callGroups(db, f, calls.slice(i, i + 500))));
  // The hourly groups cover every line of the split calls (whatever their branch or answer).
  const splitKeys = new Set(calls.map((g) => JSON.stringify([g.agent, g.action, g.resource])));
  return simulate(before, after, [
    ...whole.filter((g) => !splitKeys.has(JSON.stringify([g.agent, g.action, g.resource]))),
    ...hourly,
  ]);
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
