import { lt, sql } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { agentSpend, agentSpendKeys } from "../db/schema.js";
import type { Logger } from "../logger.js";
import type { Drift, DriftLevel } from "../policy/drift.js";
import type { PolicyIndex } from "../policy/index.js";
import {
  describeViolations,
  eventViolations,
  monthlyViolation,
  ownsResource,
  type PactDef,
  type PactViolation,
} from "../policy/pact.js";
import type { Pacts } from "./pacts.js";
import type { Incidents, Trust } from "./trust.js";
import type { Usage } from "./usage.js";

/** Spending keys are kept this long: past it, no retry of their call can come (a month and a margin). */
const SPEND_KEY_DAYS = 40;

/**
 * Adds to the agent's spend this month; the total after, or undefined when the call's idempotency
 * key was counted already (a retry the provider answered again: the money moved once).
 */
async function addSpend(
  db: Db,
  project: string,
  agent: string,
  now: Date,
  moved: { amount: number; currency: string },
  key: string | undefined,
): Promise<number | undefined> {
  const month = now.toISOString().slice(0, 7);
  return db.transaction(async (tx) => {
    if (key !== undefined) {
      const [fresh] = await tx
        .insert(agentSpendKeys)
        .values({ project, agent, key: key.slice(0, 300), at: now })
        .onConflictDoNothing()
        .returning({ key: agentSpendKeys.key });
      if (!fresh) return undefined;
    }
    const [row] = await tx
      .insert(agentSpend)
      .values({ project, agent, month, currency: moved.currency, amount: moved.amount })
      .onConflictDoUpdate({
        target: [agentSpend.project, agentSpend.agent, agentSpend.month, agentSpend.currency],
        set: { amount: sql`${agentSpend.amount} + excluded.amount` },
      })
      .returning({ amount: agentSpend.amount });
    return Number(row!.amount);
  });
}

/** A provider's event about a resource (a card payment), as far as behaviour is concerned. */
export interface ObservedEvent {
  provider: string;
  eventType: string | null;
  /** The `webhook.received` line of the event. */
  eventLineId: string;
  resource: string;
  merchantCategory?: string | undefined;
  amount?: { amount: number; currency: string } | undefined;
}

/** What Butler knows of the agent an event is about, once the event is counted. */
export interface EventSubject {
  project: string;
  agent: string;
  violations: PactViolation[];
  /** The merchant categories' drift, computed with this event. */
  drift: Drift | undefined;
  /**
   * The drift this event shows: the merchant categories' level when the event is its category's
   * first payment (the baseline never had it), else `none`: a later payment, ordinary or at the
   * same new category, while the level stays, shows none (a card a person unfroze stays so).
   */
  level: DriftLevel;
  /** The agent's trust score after this event (projects with `trust:`). */
  trust: number | undefined;
  /** The audit lines the event caused (pact.violated). */
  eventIds: string[];
}

/**
 * Provider events as an agent's behaviour: an event about a resource an agent's pact names as its
 * own (its card) is checked against that pact (allowed merchant categories, expected cost), counted
 * for drift (merchant categories, computed at once), and a violation lowers the agent's trust
 * (`webhook_incident`). Reactions and alerts then see the agent's drift and trust.
 */
export function createBehaviour(deps: {
  db: Db;
  clock: Clock;
  log: Logger;
  audit: Pick<AuditLog, "append">;
  policies: { index(): PolicyIndex };
  pacts: Pick<Pacts, "all" | "get">;
  usage: Pick<Usage, "observe" | "peek">;
  trust: Pick<Trust, "score">;
  incidents: Incidents;
}) {
  /** The agent whose pact names the resource as its own (projects in name order, then agents). */
  function subjectOf(resource: string): { project: string; agent: string; pact: PactDef } | undefined {
    const found: { project: string; agent: string; pact: PactDef }[] = [];
    const projects = [...deps.policies.index().projects.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const project of projects) {
      const agents = new Map<string, PactDef>(project.document.pacts);
      for (const p of deps.pacts.all()) {
        if (p.project !== project.name) continue;
        if (p.pact) agents.set(p.agent, p.pact);
      }
      for (const agent of [...agents.keys()].sort()) {
        const pact = agents.get(agent)!;
        if (ownsResource(pact, resource)) found.push({ project: project.name, agent, pact });
      }
    }
    // Two owners: the event is nobody's (attributing it to either could penalise, alert and
    // react for the wrong agent); the pacts need fixing.
    if (found.length > 1) {
      deps.log.warn(
        { resource, owners: found.map((f) => `${f.project}/${f.agent}`) },
        "a provider event's resource is in more than one agent's pact: it is attributed to none",
      );
      return undefined;
    }
    return found[0];
  }

  /** The pact in force for the agent: set through the admin API, else the policy's. */
  const pactOf = (project: string, agent: string): PactDef | undefined =>
    deps.pacts.get(project, agent)?.pact ??
    deps.policies.index().projects.get(project)?.document.pacts.get(agent);

  return {
    /** Deletes spending keys older than any retry of their call (the sweeper calls it). */
    async purgeSpendKeys(): Promise<void> {
      const before = new Date(deps.clock.now().getTime() - SPEND_KEY_DAYS * 86_400_000);
      await deps.db.delete(agentSpendKeys).where(lt(agentSpendKeys.at, before));
    },
    /**
     * A money-moving call of the agent succeeded: its amount is added to the agent's spend this
     * month, and spend running ahead of the pact's `expected_monthly_budget` (more than the
     * expectation prorated to the day of the month) is a flagged violation, once, when it crosses
     * that line. Never throws: the call is made and answered already.
     */
    async spent(
      project: string,
      agent: string,
      moved: { amount: number; currency: string },
      decisionEventId: string,
      /** The key the call was sent with: a retry with the same key is the same spending. */
      idempotencyKey?: string,
    ): Promise<void> {
      const expected = pactOf(project, agent)?.expectedMonthlyBudget;
      if (!expected || moved.currency !== expected.currency || !(moved.amount > 0)) return;
      try {
        const now = deps.clock.now();
        const total = await addSpend(deps.db, project, agent, now, moved, idempotencyKey);
        if (total === undefined) return;
        const v = monthlyViolation(expected, total - moved.amount, total, now);
        if (!v) return;
        const line = await deps.audit.append({
          type: "pact.violated",
          agent,
          project,
          reason: describeViolations(agent, [v]),
          details: {
            source: "spend",
            decision_event_id: decisionEventId,
            mode: "flag",
            violations: [{ ...v }],
          },
        });
        await deps.incidents(project, agent, "pact_violation_flagged", line.event_id);
      } catch (e) {
        deps.log.error({ err: e, agent, project }, "an agent's spend could not be recorded");
      }
    },
    /**
     * Counts a provider's event for the agent it is about (pact, trust incident, drift), once, on
     * its first delivery; with `count: false` (a delivery resuming one that was interrupted) only
     * assesses it, from what is stored, writing nothing.
     */
    async observeEvent(e: ObservedEvent, count = true): Promise<EventSubject | undefined> {
      const subject = subjectOf(e.resource);
      if (!subject) return undefined;
      const { project, agent, pact } = subject;
      const compiled = deps.policies.index().projects.get(project);
      const violations = eventViolations(pact, { merchantCategory: e.merchantCategory, amount: e.amount });
      const eventIds: string[] = [];
      if (count && violations.length > 0) {
        const line = await deps.audit.append({
          type: "pact.violated",
          agent,
          project,
          resource: e.resource,
          reason: `${describeViolations(agent, violations)} (a ${e.provider} ${e.eventType ?? "event"})`,
          details: {
            source: "webhook",
            provider: e.provider,
            provider_event_type: e.eventType,
            webhook_event_id: e.eventLineId,
            mode: "flag",
            violations: violations.map((v) => ({ ...v })),
          },
        });
        eventIds.push(line.event_id);
        await deps.incidents(project, agent, "webhook_incident", line.event_id);
      }
      const trust = compiled?.document.trust;
      const mcc = e.merchantCategory;
      const drift =
        mcc === undefined
          ? undefined
          : count
            ? await deps.usage.observe(project, agent, "merchant_category", mcc)
            : await deps.usage.peek(project, agent, "merchant_category", mcc);
      return {
        project,
        agent,
        violations,
        drift,
        // The drift this event shows: its category's first payment, the baseline never having had it.
        level: drift?.first ? drift.level : "none",
        trust: trust ? await deps.trust.score(project, agent, trust.initial) : undefined,
        eventIds,
      };
    },
  };
}

export type Behaviour = ReturnType<typeof createBehaviour>;
