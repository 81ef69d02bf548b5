import { and, eq, gte, lt, sql } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db, Tx } from "../db/client.js";
import { agentDrift, usageCounts } from "../db/schema.js";
import {
  type Counts,
  DEFAULT_DRIFT_THRESHOLDS,
  type Drift,
  type DriftLevel,
  drift,
  settleLevel,
} from "../policy/drift.js";
import { agentCache } from "./agent-cache.js";

/**
 * Tool usage and drift. Every decision counts its agent's tool (and operation group) in memory,
 * with nothing on the call's path but a map update; `flush` adds the counts to `usage_counts` in
 * one statement per batch, and `evaluate` compares each active agent's recent window with its
 * baseline (policy/drift.ts) and writes `drift.detected` when an agent's level changes to minor or
 * major (once across instances: the level is stored with the line, in one transaction).
 */

export const DRIFT_RECENT_MS = 24 * 3600_000;
export const DRIFT_BASELINE_MS = 14 * 24 * 3600_000;
const HOUR = 3600_000;
/** An agent's distinct tools (or groups) counted per hour; more (actions made up to flood) count as one. */
const MAX_VALUES_PER_AGENT_HOUR = 200;
const OTHER = "(other)";

export type Dimension = "tool" | "group" | "merchant_category";
const DIMENSIONS: readonly Dimension[] = ["tool", "group", "merchant_category"];
const DIMENSION_TEXT: Record<Dimension, string> = {
  tool: "tools",
  group: "operation groups",
  merchant_category: "card merchant categories",
};

/** Told of every change of an agent's drift level, in the transaction that records it (security alerts). */
export type DriftListener = (
  tx: Tx,
  change: { project: string; agent: string; dimension: Dimension; drift: Drift; eventId: string },
) => Promise<void>;

export function createUsage(deps: {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  onDrift?: DriftListener | undefined;
}) {
  const { db, clock } = deps;
  const levels = agentCache<DriftLevel>(deps.changes, "drift");
  /**
   * Records a drift; the drift as recorded (its level settled with hysteresis). A change of level
   * is in force here at once (other instances hear of it).
   */
  const rec = async (project: string, agent: string, dimension: Dimension, d: Drift, now: Date) => {
    const r = await record(deps, project, agent, dimension, d, now);
    if (r.changed) levels.forget(project, agent);
    return r.drift;
  };
  /**
   * `hour NUL project NUL agent NUL dimension NUL value` → calls not flushed yet (names and actions
   * hold no NUL: requests with one are refused before they are decided).
   */
  let pending = new Map<string, number>();
  let lastEvaluated = 0;
  let lastPurged = 0;

  /** The values seen per agent and hour (kept for the hour): past the cap, calls count as `(other)`. */
  const seen = new Map<string, Set<string>>();
  const count = (agentHour: string, dim: string, value: string) => {
    let values = seen.get(agentHour);
    if (!values) {
      values = new Set();
      seen.set(agentHour, values);
    }
    const v = dim + value;
    if (!values.has(v)) {
      if (values.size < MAX_VALUES_PER_AGENT_HOUR) values.add(v);
      else value = OTHER;
    }
    const key = agentHour + dim + value;
    pending.set(key, (pending.get(key) ?? 0) + 1);
  };

  return {
    /** Counts one call (in memory; `flush` stores it). */
    note(project: string, agent: string, tool: string, group: string | undefined, at: Date): void {
      const prefix = `${Math.floor(at.getTime() / HOUR) * HOUR}\u0000${project}\u0000${agent}\u0000`;
      count(prefix, "tool\u0000", tool);
      if (group !== undefined) count(prefix, "group\u0000", group);
    },

    /** Adds the counts noted since the last flush to the database. */
    async flush(): Promise<void> {
      if (pending.size === 0) return;
      const batch = pending;
      pending = new Map();
      // What was seen in hours gone by is forgotten.
      const hour = Math.floor(clock.now().getTime() / HOUR) * HOUR;
      for (const k of seen.keys()) if (Number(k.slice(0, k.indexOf("\u0000"))) < hour - HOUR) seen.delete(k);
      const values = [...batch].map(([key, n]) => {
        const [hour, project, agent, dimension, ...rest] = key.split("\u0000") as [
          string,
          string,
          string,
          string,
        ];
        return { project, agent, dimension, value: rest.join("\u0000"), bucketStart: Number(hour), count: n };
      });
      try {
        await storeCounts(db, values);
      } catch (e) {
        // Not lost: counted again with the next flush.
        for (const [k, n] of batch) pending.set(k, (pending.get(k) ?? 0) + n);
        throw e;
      }
    },

    /** Computes the drift of every agent active in the recent window; the drifts found. */
    async evaluate(): Promise<{ project: string; agent: string; dimension: Dimension; drift: Drift }[]> {
      const now = clock.now();
      const recentFrom = now.getTime() - DRIFT_RECENT_MS;
      const baselineFrom = recentFrom - DRIFT_BASELINE_MS;
      const active = await db
        .selectDistinct({ project: usageCounts.project, agent: usageCounts.agent })
        .from(usageCounts)
        .where(gte(usageCounts.bucketStart, Math.floor(recentFrom / HOUR) * HOUR));
      const out: { project: string; agent: string; dimension: Dimension; drift: Drift }[] = [];
      for (const { project, agent } of active) {
        const windows = await countsOf(db, project, agent, baselineFrom, recentFrom, now.getTime() + HOUR);
        for (const dimension of DIMENSIONS) {
          const w = windows(dimension);
          const d = drift(w.baseline, w.recent, DEFAULT_DRIFT_THRESHOLDS, dimension === "merchant_category");
          out.push({ project, agent, dimension, drift: await rec(project, agent, dimension, d, now) });
        }
      }
      return out;
    },

    /**
     * Counts one observation at once (a provider's event about the agent's card: its merchant
     * category) and computes that dimension's drift for the agent then and there, for reactions
     * that depend on it. Events are few; calls go through `note`.
     */
    async observe(
      project: string,
      agent: string,
      dimension: Dimension,
      value: string,
    ): Promise<Drift & { first: boolean }> {
      return observeNow({ db, rec, now: clock.now() }, project, agent, dimension, value);
    },

    /**
     * The agent's highest drift level across dimensions, as last recorded: read once, then kept in
     * memory and dropped when any instance records a change of the agent's level (trust rules with
     * `drift:` read it on the call's path).
     */
    level: (project: string, agent: string): Promise<DriftLevel> =>
      levels.get(project, agent, () => storedLevel(db, project, agent)),

    /** A dimension's drift for the agent now, computed from what is stored, writing nothing. */
    peek: (project: string, agent: string, dimension: Dimension, value: string) =>
      peekDrift(db, clock.now(), project, agent, dimension, value),

    /**
     * The sweeper's part: store the counts, compute the drift at most once a minute, and delete old
     * counts at most once an hour.
     */
    async sweep(): Promise<void> {
      await this.flush();
      const now = clock.now().getTime();
      if (now - lastEvaluated >= 60_000) {
        lastEvaluated = now;
        await this.evaluate();
      }
      if (now - lastPurged >= HOUR) {
        lastPurged = now;
        await this.purge();
      }
    },

    /** Deletes counts older than any window looks at. */
    async purge(): Promise<void> {
      const before = clock.now().getTime() - DRIFT_RECENT_MS - DRIFT_BASELINE_MS - 2 * HOUR;
      await db.delete(usageCounts).where(lt(usageCounts.bucketStart, before));
    },
  };
}

/** Adds counts to `usage_counts`, all or nothing (a batch put back after a failure is never counted twice). */
async function storeCounts(
  db: Db,
  values: {
    project: string;
    agent: string;
    dimension: string;
    value: string;
    bucketStart: number;
    count: number;
  }[],
): Promise<void> {
  // All or nothing: a batch put back after a failure is never counted twice.
  await db.transaction(async (tx) => {
    for (let i = 0; i < values.length; i += 500)
      await tx
        .insert(usageCounts)
        .values(values.slice(i, i + 500))
        .onConflictDoUpdate({
          target: [
            usageCounts.project,
            usageCounts.agent,
            usageCounts.dimension,
            usageCounts.value,
            usageCounts.bucketStart,
          ],
          set: { count: sql`${usageCounts.count} + excluded.count` },
        });
  });
}

/** Stores one observation at once and computes the drift of its dimension for the agent. */
async function observeNow(
  deps: {
    db: Db;
    rec: (project: string, agent: string, dimension: Dimension, d: Drift, now: Date) => Promise<Drift>;
    now: Date;
  },
  project: string,
  agent: string,
  dimension: Dimension,
  value: string,
): Promise<Drift & { first: boolean }> {
  const { db, rec, now } = deps;
  const bucketStart = Math.floor(now.getTime() / HOUR) * HOUR;
  await storeCounts(db, [{ project, agent, dimension, value: value.slice(0, 200), bucketStart, count: 1 }]);
  const { d, w } = await driftAt(db, now, project, agent, dimension);
  return { ...(await rec(project, agent, dimension, d, now)), first: firstSighting(w, value) };
}

/** A dimension's drift for the agent at `at`, computed from what is stored, writing nothing. */
async function peekDrift(
  db: Db,
  at: Date,
  project: string,
  agent: string,
  dimension: Dimension,
  value: string,
): Promise<Drift & { first: boolean }> {
  const { d, w } = await driftAt(db, at, project, agent, dimension);
  return { ...d, first: firstSighting(w, value) };
}

/** A dimension's drift for the agent at `at`, and the windows' counts it was computed from. */
async function driftAt(db: Db, at: Date, project: string, agent: string, dimension: Dimension) {
  const recentFrom = at.getTime() - DRIFT_RECENT_MS;
  const windows = await countsOf(
    db,
    project,
    agent,
    recentFrom - DRIFT_BASELINE_MS,
    recentFrom,
    at.getTime() + HOUR,
  );
  const w = windows(dimension);
  return { w, d: drift(w.baseline, w.recent, DEFAULT_DRIFT_THRESHOLDS, dimension === "merchant_category") };
}

/** Whether this observation is the value's first in both windows (the one counted just now). */
function firstSighting(w: { baseline: Counts; recent: Counts }, value: string): boolean {
  const v = value.slice(0, 200);
  return (w.recent.get(v) ?? 0) === 1 && (w.baseline.get(v) ?? 0) === 0;
}

/**
 * An agent's counts per dimension in the baseline window [from, recentFrom) and the recent one
 * [recentFrom, to), read in one query.
 */
async function countsOf(
  db: Db,
  project: string,
  agent: string,
  from: number,
  recentFrom: number,
  to: number,
) {
  const rows = await db
    .select({
      dimension: usageCounts.dimension,
      value: usageCounts.value,
      baseline: sql<number>`sum(case when ${usageCounts.bucketStart} < ${recentFrom} then ${usageCounts.count} else 0 end)::int`,
      recent: sql<number>`sum(case when ${usageCounts.bucketStart} >= ${recentFrom} then ${usageCounts.count} else 0 end)::int`,
    })
    .from(usageCounts)
    .where(
      and(
        eq(usageCounts.project, project),
        eq(usageCounts.agent, agent),
        gte(usageCounts.bucketStart, from),
        lt(usageCounts.bucketStart, to),
      ),
    )
    .groupBy(usageCounts.dimension, usageCounts.value);
  return (dimension: Dimension) => {
    const baseline = new Map<string, number>();
    const recent = new Map<string, number>();
    for (const r of rows) {
      if (r.dimension !== dimension) continue;
      if (Number(r.baseline) > 0) baseline.set(r.value, Number(r.baseline));
      if (Number(r.recent) > 0) recent.set(r.value, Number(r.recent));
    }
    return { baseline: baseline as Counts, recent: recent as Counts };
  };
}

/** Stores the level and, when it changed to minor or major, writes `drift.detected` (once across instances). */
async function record(
  deps: {
    db: Db;
    audit: Pick<AuditLog, "appendInTx">;
    changes: Pick<ChangeBus, "publish">;
    onDrift?: DriftListener | undefined;
  },
  project: string,
  agent: string,
  dimension: Dimension,
  d: Drift,
  now: Date,
) {
  const numbers = {
    jaccard: d.jaccard,
    jensen_shannon: d.jensenShannon,
    baseline_calls: d.baselineCalls,
    recent_calls: d.recentCalls,
    shifts: d.shifts,
    ...(d.newValues.length > 0 ? { new_values: d.newValues } : {}),
  };
  const { db, audit } = deps;
  const row = and(
    eq(agentDrift.project, project),
    eq(agentDrift.agent, agent),
    eq(agentDrift.dimension, dimension),
  );
  return db.transaction(async (tx) => {
    // The row exists before it is locked, so that two instances evaluating a new agent serialise here.
    await tx
      .insert(agentDrift)
      .values({ project, agent, dimension, level: "none", computedAt: new Date(0), numbers: {} })
      .onConflictDoNothing();
    const [before] = await tx.select({ level: agentDrift.level }).from(agentDrift).where(row).for("update");
    // A level falls only once the distances are clearly under the line they crossed (hysteresis).
    d = { ...d, level: settleLevel(before?.level ?? "none", d, DEFAULT_DRIFT_THRESHOLDS) };
    // The numbers are the last computed ones; a line is written only when the level changes.
    await tx.update(agentDrift).set({ level: d.level, computedAt: now, numbers }).where(row);
    if (before?.level === d.level) return { changed: false, drift: d };
    await deps.changes.publish(tx, { kind: "drift", project, agent });
    if (d.level === "none") return { changed: true, drift: d };
    const [line] = await audit.appendInTx(tx, [
      {
        type: "drift.detected",
        at: now,
        agent,
        project,
        reason: `${agent}'s use of ${DIMENSION_TEXT[dimension]} in the last ${DRIFT_RECENT_MS / HOUR} h departs from the ${DRIFT_BASELINE_MS / (24 * HOUR)} days before: ${d.level} (Jaccard distance ${d.jaccard}, Jensen-Shannon divergence ${d.jensenShannon})`,
        details: { level: d.level, previous_level: before?.level ?? "none", dimension, ...numbers },
      },
    ]);
    await deps.onDrift?.(tx, { project, agent, dimension, drift: d, eventId: line!.event_id });
    return { changed: true, drift: d };
  });
}

export type Usage = ReturnType<typeof createUsage>;

/** The agent's highest drift level across dimensions, as stored. */
async function storedLevel(db: Db, project: string, agent: string): Promise<DriftLevel> {
  const rows = await db
    .select({ level: agentDrift.level })
    .from(agentDrift)
    .where(and(eq(agentDrift.project, project), eq(agentDrift.agent, agent)));
  const all = rows.map((r) => r.level);
  return all.includes("major") ? "major" : all.includes("minor") ? "minor" : "none";
}
