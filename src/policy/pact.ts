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
  /** Resource globs of what is the agent's own (its cards): provider events about them are its behaviour. */
  resources: string[] | undefined;
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
  /** Which expectation the call (or a provider's event about the agent's resource) departs from. */
  rule:
    | "intended_tools"
    | "intended_operations"
    | "expected_cost_per_call"
    | "allowed_merchant_categories"
    | "expected_classification"
    | "expected_monthly_budget";
  /** What the call did, and what the pact expected (and by how much it departs, for a cost). */
  actual: string;
  expected: string;
  ratio?: number;
}

const globs = new WeakMap<PactDef, { tools: Glob[]; resources: Glob[] }>();

function compiled(pact: PactDef): { tools: Glob[]; resources: Glob[] } {
  let g = globs.get(pact);
  if (!g) {
    const all = (list: string[] | undefined) =>
      (list ?? []).flatMap((t) => {
        const c = compileGlob(t);
        return c.ok ? [c.value] : [];
      });
    g = { tools: all(pact.intendedTools), resources: all(pact.resources) };
    globs.set(pact, g);
  }
  return g;
}

const toolGlobs = (pact: PactDef) => compiled(pact).tools;

/** Whether `resource` is one of the agent's own (its pact's `resources`). */
export function ownsResource(pact: PactDef, resource: string): boolean {
  return compiled(pact).resources.some((g) => g.match(resource));
}

/** What a provider's event about an agent's resource is, as far as its pact speaks about it. */
export interface PactEvent {
  merchantCategory?: string | undefined;
  amount?: { amount: number; currency: string } | undefined;
}

/**
 * How an event about the agent's resource (a card payment) departs from its pact: a merchant
 * category outside `allowed_merchant_categories`, an amount beyond the expected cost per call.
 */
export function eventViolations(pact: PactDef, event: PactEvent): PactViolation[] {
  const out: PactViolation[] = [];
  const mcc = event.merchantCategory;
  if (pact.allowedMerchantCategories && mcc !== undefined && !pact.allowedMerchantCategories.includes(mcc))
    out.push({
      rule: "allowed_merchant_categories",
      actual: `merchant category ${mcc}`,
      expected: pact.allowedMerchantCategories.join(", "),
    });
  return [...out, ...costViolations(pact, event.amount)];
}

/** The classes of data, from least to most sensitive, and the class each finding belongs to. */
const CLASSES = ["public", "internal", "confidential", "restricted"] as const;
const CLASS_OF: Readonly<Record<string, (typeof CLASSES)[number]>> = {
  email: "confidential",
  iban: "confidential",
  card_number: "restricted",
  api_key: "restricted",
  private_key: "restricted",
};

/**
 * Personal data or secrets found in a call (kinds: email, iban, card_number, api_key, private_key)
 * above the pact's expected classification: personal data is confidential, card numbers and
 * secrets restricted.
 */
export function classificationViolation(pact: PactDef, kinds: readonly string[]): PactViolation | undefined {
  const expected = pact.expectedClassification;
  if (!expected || kinds.length === 0) return undefined;
  const rank = (c: string) => CLASSES.indexOf(c as (typeof CLASSES)[number]);
  const above = [...new Set(kinds)].filter((k) => rank(CLASS_OF[k] ?? "restricted") > rank(expected));
  if (above.length === 0) return undefined;
  const worst = above.map((k) => CLASS_OF[k] ?? "restricted").sort((a, b) => rank(b) - rank(a))[0]!;
  return {
    rule: "expected_classification",
    actual: `${worst} data (${above.join(", ")})`,
    expected: expected,
  };
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
  out.push(...costViolations(pact, call.amount));
  return out;
}

function costViolations(pact: PactDef, amount: { amount: number; currency: string } | undefined) {
  const out: PactViolation[] = [];
  const cost = pact.expectedCostPerCall;
  if (!cost || !amount || amount.amount <= 0) return out;
  if (amount.currency !== cost.currency)
    out.push({
      rule: "expected_cost_per_call",
      actual: `${amount.amount} ${amount.currency}`,
      expected: `amounts in ${cost.currency}`,
    });
  else {
    // A pact expecting no cost at all: any amount departs from it.
    const ratio = cost.amount === 0 ? Number.POSITIVE_INFINITY : amount.amount / cost.amount;
    if (ratio > pact.costTolerance)
      out.push({
        rule: "expected_cost_per_call",
        actual: `${amount.amount} ${amount.currency}`,
        expected: `${cost.amount} ${cost.currency} (at most ${pact.costTolerance} times that)`,
        ...(Number.isFinite(ratio) ? { ratio: Math.round(ratio * 100) / 100 } : {}),
      });
  }
  return out;
}

/**
 * Spend running ahead of the monthly expectation: the month's spend (UTC) past the expectation
 * prorated to the day of the month (day d of n: d/n of it, rounded up), reported once, by the
 * spending that crossed that line (`before` at or under it, `after` over it).
 */
export function monthlyViolation(
  expected: { amount: number; currency: string },
  before: number,
  after: number,
  now: Date,
): PactViolation | undefined {
  const day = now.getUTCDate();
  const days = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
  const allowed = Math.ceil((expected.amount * day) / days);
  if (!(before <= allowed && after > allowed)) return undefined;
  return {
    rule: "expected_monthly_budget",
    actual: `${after} ${expected.currency} this month by day ${day} of ${days}`,
    expected: `${expected.amount} ${expected.currency} a month, ${allowed} by today`,
    ratio: allowed === 0 ? undefined : Math.round((after / allowed) * 100) / 100,
  };
}

/** One line for people: the violations of a call. */
export function describeViolations(agent: string, vs: readonly PactViolation[]): string {
  return vs
    .map((v) =>
      v.rule === "expected_cost_per_call" && v.ratio !== undefined
        ? `${agent} moved ${v.actual}, ${v.ratio} times its pact's expected cost per call (${v.expected})`
        : v.rule === "expected_cost_per_call"
          ? `${agent} moved ${v.actual}, outside its pact's expected cost per call (${v.expected})`
          : v.rule === "expected_classification"
            ? `${agent} handled ${v.actual}, above its pact's expected classification (${v.expected})`
            : `${agent} used ${v.actual}, outside its pact's ${v.rule} (${v.expected})`,
    )
    .join("; ");
}
