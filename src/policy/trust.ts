import { type CompiledConstraint, type CompiledProject, compileConstraint } from "./compile.js";
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

/** Whether any trust rule could limit this agent's call of `action` (then its score is needed). */
export function trustMayLimit(project: CompiledProject, agent: string, action: string): boolean {
  return rulesOf(project).some(
    (r) => (!r.def.agents || r.def.agents.includes(agent)) && r.actions.some((g) => g.match(action)),
  );
}

/** The first trust rule the call fails at this score, with what failed; undefined when none does. */
export function trustLimit(
  project: CompiledProject,
  call: { agent: string; action: string; params: Record<string, unknown> | undefined },
  score: number,
): { rule: TrustRuleDef; detail: string } | undefined {
  for (const r of rulesOf(project)) {
    if (score >= r.def.below) continue;
    if (r.def.agents && !r.def.agents.includes(call.agent)) continue;
    if (!r.actions.some((g) => g.match(call.action))) continue;
    for (const c of r.constraints) {
      const failed = checkConstraint(c, call.params);
      if (failed) return { rule: r.def, detail: failed };
    }
  }
  return undefined;
}
