import { compileGlob, type Glob } from "./glob.js";

/**
 * Behavioural pacts (pure): what an agent is for, as its project's policy says (`pacts:`), and how a
 * call departs from it. A call is checked against its agent's pact before the policy decides; a
 * departure is a violation, audited (`pact.violated`, with what and by how much) and, as the pact
 * says, only flagged or denied.
 */

export interface PactDef {
  agent: string;
  purpose: string;
  /** public, internal, confidential or restricted: the data the agent is expected to handle. */
  expectedClassification: string | undefined;
  /** MCP tool names (`revolut_list_transactions`) or full-action globs (`revolut:*`); none: any. */
  intendedTools: string[] | undefined;
  /** Operation groups of provider calls (`read`, `payments`); none: any. */
  intendedOperations: string[] | undefined;
  /** In minor units; a call moving more than `costTolerance` times this is a violation. */
  expectedCostPerCall: { amount: number; currency: string } | undefined;
  expectedMonthlyBudget: { amount: number; currency: string } | undefined;
  /** How many times the expected cost per call a call may move (default 3). */
  costTolerance: number;
  /** Card merchant categories (MCC) the agent's card is expected at; none: any. */
  allowedMerchantCategories: string[] | undefined;
  onViolation: "flag" | "deny";
}

/** What a call is, as far as a pact speaks about it. */
export interface PactCall {
  action: string;
  /** For a provider call: its MCP tool name, its operation group, the amount it moves. */
  tool?: string | undefined;
  group?: string | undefined;
  amount?: { amount: number; currency: string } | undefined;
}

export interface PactViolation {
  /** Which expectation: intended_tools, intended_operations or expected_cost_per_call. */
  rule: "intended_tools" | "intended_operations" | "expected_cost_per_call";
  /** What the call did, and what the pact expected (and by how much it departs, for a cost). */
  actual: string;
  expected: string;
  ratio?: number;
}

const globs = new WeakMap<PactDef, Glob[]>();

function toolGlobs(pact: PactDef): Glob[] {
  let g = globs.get(pact);
  if (!g) {
    g = (pact.intendedTools ?? []).flatMap((t) => {
      const c = compileGlob(t);
      return c.ok ? [c.value] : [];
    });
    globs.set(pact, g);
  }
  return g;
}

/** How the call departs from the pact (empty: it does not). */
export function pactViolations(pact: PactDef, call: PactCall): PactViolation[] {
  const out: PactViolation[] = [];
  if (pact.intendedTools) {
    const names = [call.action, ...(call.tool ? [call.tool] : [])];
    if (!toolGlobs(pact).some((g) => names.some((n) => g.match(n))))
      out.push({
        rule: "intended_tools",
        actual: call.tool ?? call.action,
        expected: pact.intendedTools.join(", "),
      });
  }
  if (pact.intendedOperations && call.group !== undefined && !pact.intendedOperations.includes(call.group))
    out.push({
      rule: "intended_operations",
      actual: call.group,
      expected: pact.intendedOperations.join(", "),
    });
  const cost = pact.expectedCostPerCall;
  if (cost && call.amount && call.amount.amount > 0 && call.amount.currency !== cost.currency)
    out.push({
      rule: "expected_cost_per_call",
      actual: `${call.amount.amount} ${call.amount.currency}`,
      expected: `amounts in ${cost.currency}`,
    });
  else if (cost && call.amount && call.amount.amount > 0) {
    // A pact expecting no cost at all: any amount departs from it.
    const ratio = cost.amount === 0 ? Number.POSITIVE_INFINITY : call.amount.amount / cost.amount;
    if (ratio > pact.costTolerance)
      out.push({
        rule: "expected_cost_per_call",
        actual: `${call.amount.amount} ${call.amount.currency}`,
        expected: `${cost.amount} ${cost.currency} (at most ${pact.costTolerance} times that)`,
        ...(Number.isFinite(ratio) ? { ratio: Math.round(ratio * 100) / 100 } : {}),
      });
  }
  return out;
}

/** One line for people: the violations of a call. */
export function describeViolations(agent: string, vs: readonly PactViolation[]): string {
  return vs
    .map((v) =>
      v.rule === "expected_cost_per_call" && v.ratio !== undefined
        ? `${agent} moved ${v.actual}, ${v.ratio} times its pact's expected cost per call (${v.expected})`
        : v.rule === "expected_cost_per_call"
          ? `${agent} moved ${v.actual}, outside its pact's expected cost per call (${v.expected})`
          : `${agent} used ${v.actual}, outside its pact's ${v.rule} (${v.expected})`,
    )
    .join("; ");
}
