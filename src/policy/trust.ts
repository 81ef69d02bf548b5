import { type CompiledConstraint, type CompiledProject, compileConstraint } from "./compile.js";
import { DRIFT_RANK, type DriftLevel } from "./drift.js";
import { compileGlob, type Glob } from "./glob.js";
import { checkConstraint } from "./parameters.js";
import type { TrustRuleDef } from "./types.js";

/**
 * Trust-scored limits (pure). An agent's trust score runs from 0 to 1000; incidents lower it and
 * clean time raises it again (gateway/trust.ts). While it is below a rule's `below`, the rule's
 * constraints apply to the calls of its actions on top of what the grants say, by the same
 * constraint checks, for every provider and tool alike.
 */

/** Incidents and what each costs (documented in docs/policy.md). */
export const TRUST_PENALTIES: Readonly<Record<string, number>> = {
  pact_violation: 100,
  pact_violation_flagged: 50,
  sensitive_data: 50,
  deny_pattern: 30,
  constraint_failed: 20,
  /** A provider's event about the agent's card breaks its pact (a blocked merchant category). */
  webhook_incident: 100,
  /** A call refused because it would exceed a budget. */
  budget_exceeded: 30,
  /** A person revoked one of the agent's grants. */
  grant_revoked: 50,
};

/** Points regained per full hour without an incident, up to the project's initial score. */
export const TRUST_RECOVERY_PER_HOUR = 10;

interface CompiledTrustRule {
  def: TrustRuleDef;
  actions: Glob[];
  constraints: CompiledConstraint[];
}

const compiled = new WeakMap<CompiledProject, CompiledTrustRule[]>();

function rulesOf(project: CompiledProject): CompiledTrustRule[] {
  let rules = compiled.get(project);
  if (!rules) {
    rules = (project.document.trust?.rules ?? []).map((def) => ({
      def,
      actions: def.actions.flatMap((a) => {
        const g = compileGlob(a);
        return g.ok ? [g.value] : [];
      }),
      constraints: def.constraints.map(compileConstraint),
    }));
    compiled.set(project, rules);
  }
  return rules;
}

/**
 * What the trust rules that could limit this agent's call of `action` need to know: its score, its
 * drift level, or neither (no rule could limit it: nothing is read).
 */
export function trustMayLimit(
  project: CompiledProject,
  agent: string,
  action: string,
): { score: boolean; drift: boolean } | undefined {
  const rules = rulesOf(project).filter(
    (r) => (!r.def.agents || r.def.agents.includes(agent)) && r.actions.some((g) => g.match(action)),
  );
  if (rules.length === 0) return undefined;
  return {
    score: rules.some((r) => r.def.below !== undefined),
    drift: rules.some((r) => r.def.drift !== undefined),
  };
}

/** Why a trust rule applies to the agent now, in words (the reason of its refusal). */
export function trustRuleCondition(
  rule: TrustRuleDef,
  agent: string,
  score: number | undefined,
  level: DriftLevel,
): string {
  return [
    ...(rule.below !== undefined ? [`${agent}'s trust score ${score} is below ${rule.below}`] : []),
    ...(rule.drift !== undefined ? [`${agent}'s drift is ${level} (at least ${rule.drift})`] : []),
  ].join(" and ");
}

/**
 * The first trust rule the call fails with this score and drift level, with what failed; undefined
 * when none does. A rule applies while every condition it gives holds.
 */
export function trustLimit(
  project: CompiledProject,
  call: { agent: string; action: string; params: Record<string, unknown> | undefined },
  score: number | undefined,
  level: DriftLevel = "none",
): { rule: TrustRuleDef; detail: string } | undefined {
  for (const r of rulesOf(project)) {
    if (r.def.below !== undefined && !(score !== undefined && score < r.def.below)) continue;
    if (r.def.drift !== undefined && DRIFT_RANK[level] < DRIFT_RANK[r.def.drift]) continue;
    if (r.def.agents && !r.def.agents.includes(call.agent)) continue;
    if (!r.actions.some((g) => g.match(call.action))) continue;
    for (const c of r.constraints) {
      const failed = checkConstraint(c, call.params);
      if (failed) return { rule: r.def, detail: failed };
    }
  }
  return undefined;
}
