import { and, eq } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db, Tx } from "../db/client.js";
import { agentTrust } from "../db/schema.js";
import type { Logger } from "../logger.js";
import type { PolicyIndex } from "../policy/index.js";
import { TRUST_PENALTIES, TRUST_RECOVERY_PER_HOUR } from "../policy/trust.js";
import { agentCache } from "./agent-cache.js";

/** Told of every incident that lowered a score, in its transaction (security alerts). */
export type TrustListener = (
  tx: Tx,
  change: { project: string; agent: string; before: number; after: number; cause: string; eventId: string },
) => Promise<void>;

/**
 * Agents' trust scores, stored per project and agent. A score is needed only for a call a trust
 * rule could limit, and is then served from memory (no database round trip on the call's path);
 * it changes only on an incident, in one transaction with its `trust.changed` line and a change
 * notification: the instance that wrote it keeps the new score at once, so the very next call there
 * is decided with it, and every other instance drops the score it kept as soon as the notification
 * arrives (as for a revoked grant), reading it again for its next call. Recovery is reckoned
 * when the score is read (10 points per full hour since the last change, up to the project's
 * initial score) and written, with its own line, when the next incident changes the score.
 */
export function createTrust(deps: {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  onLowered?: TrustListener | undefined;
}) {
  const { db, audit, clock, changes } = deps;
  /** project, agent → the stored row (null: none yet, the project's initial score applies). */
  const cache = agentCache<{ score: number; updatedAt: Date } | null>(changes, "trust");
  const where = (project: string, agent: string) =>
    and(eq(agentTrust.project, project), eq(agentTrust.agent, agent));
  /** The stored score with the recovery since it was stored (never less: clocks may disagree). */
  const recovered = (stored: number, since: Date, initial: number, now: Date) => {
    if (stored >= initial) return stored;
    const hours = Math.max(0, Math.floor((now.getTime() - since.getTime()) / 3600_000));
    return Math.min(initial, stored + TRUST_RECOVERY_PER_HOUR * hours);
  };

  return {
    /**
     * Sets the agent's score back to `initial` (a person's decision, from a security alert):
     * audited as `trust.changed` with cause `restored`; the scores before and after (equal when
     * it was not below).
     */
    async restore(
      project: string,
      agent: string,
      initial: number,
      by: string,
      alertId: string,
    ): Promise<{ before: number; after: number }> {
      const started = cache.generation();
      const result = await db.transaction((tx) =>
        restoreInTx(
          { tx, audit, changes, now: () => clock.now(), recovered },
          project,
          agent,
          initial,
          by,
          alertId,
        ),
      );
      if (result.row) cache.settled(project, agent, started, result.row);
      return { before: result.before, after: result.after };
    },

    async score(project: string, agent: string, initial: number): Promise<number> {
      const row = await cache.get(project, agent, async () => {
        const [stored] = await db.select().from(agentTrust).where(where(project, agent));
        return stored ? { score: stored.score, updatedAt: stored.updatedAt } : null;
      });
      return row ? recovered(row.score, row.updatedAt, initial, clock.now()) : initial;
    },

    /**
     * Lowers the agent's score by `penalty` for `cause` (the incident's audit line `eventId`); the
     * score after. Concurrent incidents, on any instance, each count: the row is made first and
     * locked, and the time is read once the lock is held.
     */
    async incident(
      project: string,
      agent: string,
      initial: number,
      penalty: number,
      cause: string,
      eventId: string,
    ): Promise<number> {
      const started = cache.generation();
      const result = await db.transaction(async (tx) => {
        await tx
          .insert(agentTrust)
          .values({ project, agent, score: initial, updatedAt: new Date(0) })
          .onConflictDoNothing();
        const [row] = await tx.select().from(agentTrust).where(where(project, agent)).for("update");
        const now = clock.now();
        const fresh = row!.updatedAt.getTime() === 0;
        const before = fresh ? row!.score : recovered(row!.score, row!.updatedAt, initial, now);
        const after = Math.max(0, before - penalty);
        // Nothing changes (already 0): nothing to write.
        if (after === before && !fresh) return { after, row: undefined };
        await tx.update(agentTrust).set({ score: after, updatedAt: now }).where(where(project, agent));
        await changes.publish(tx, { kind: "trust", project, agent });
        const lines = [];
        if (!fresh && before > row!.score)
          lines.push({
            type: "trust.changed",
            at: now,
            agent,
            project,
            reason: `recovered with clean use since ${row!.updatedAt.toISOString()}`,
            details: { before: row!.score, after: before, cause: "recovery" },
          });
        if (after !== before)
          lines.push({
            type: "trust.changed",
            at: now,
            agent,
            project,
            reason: `${cause}: -${before - after}`,
            details: { before, after, cause, incident_event_id: eventId },
          });
        if (lines.length > 0) {
          const written = await audit.appendInTx(tx, lines);
          if (after < before)
            await deps.onLowered?.(tx, {
              project,
              agent,
              before,
              after,
              cause,
              eventId: written[written.length - 1]!.event_id,
            });
        }
        return { after, row: { score: after, updatedAt: now } };
      });
      // Committed: this instance decides its next call with the new score at once (its own
      // notification, arriving later, only drops it to be read again). Unless another change
      // arrived meanwhile: then this score may already be older than the stored one.
      if (result.row) cache.settled(project, agent, started, result.row);
      return result.after;
    },
  };
}

export type Trust = ReturnType<typeof createTrust>;

/** Sets the agent's score back to `initial` in `tx` (see `restore`). */
async function restoreInTx(
  deps: {
    tx: Tx;
    audit: Pick<AuditLog, "appendInTx">;
    changes: Pick<ChangeBus, "publish">;
    now: () => Date;
    recovered: (stored: number, since: Date, initial: number, now: Date) => number;
  },
  project: string,
  agent: string,
  initial: number,
  by: string,
  alertId: string,
) {
  const { tx } = deps;
  const where = and(eq(agentTrust.project, project), eq(agentTrust.agent, agent));
  await tx
    .insert(agentTrust)
    .values({ project, agent, score: initial, updatedAt: new Date(0) })
    .onConflictDoNothing();
  const [row] = await tx.select().from(agentTrust).where(where).for("update");
  const now = deps.now();
  const before =
    row!.updatedAt.getTime() === 0 ? row!.score : deps.recovered(row!.score, row!.updatedAt, initial, now);
  if (before >= initial) return { before, after: before, row: undefined };
  await tx.update(agentTrust).set({ score: initial, updatedAt: now }).where(where);
  await deps.changes.publish(tx, { kind: "trust", project, agent });
  await deps.audit.appendInTx(tx, [
    {
      type: "trust.changed",
      at: now,
      agent,
      project,
      reason: `restored to ${initial} by ${by}`,
      details: { before, after: initial, cause: "restored", restored_by: by, alert_id: alertId },
    },
  ]);
  return { before, after: initial, row: { score: initial, updatedAt: now } };
}

/**
 * An agent's incident outside a decision (a budget refusal, a provider's event breaking its pact):
 * lowers its trust score by the cause's penalty when its project uses trust scores. Never throws:
 * what caused it is stored and answered already; a lost incident only leaves the score higher.
 */
export function createIncidents(deps: {
  trust: Pick<Trust, "incident">;
  policies: { index(): PolicyIndex };
  log: Logger;
}) {
  return async (project: string, agent: string, cause: string, eventId: string): Promise<void> => {
    const trust = deps.policies.index().projects.get(project)?.document.trust;
    const penalty = TRUST_PENALTIES[cause];
    if (!trust || penalty === undefined) return;
    try {
      await deps.trust.incident(project, agent, trust.initial, penalty, cause, eventId);
    } catch (e) {
      deps.log.error({ err: e, agent, project }, "a trust incident could not be recorded");
    }
  };
}

export type Incidents = ReturnType<typeof createIncidents>;
