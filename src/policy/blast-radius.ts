import { compileGlob, globsOverlap } from "./glob.js";
import { escapeGlob, type ScopedCall } from "./scope.js";
import { formatDuration } from "./time.js";

/**
 * What a grant from an access request would allow besides the call that was denied, as an
 * approver reads it on a card: the pattern it adds, the provider operations its action opens, the
 * other resources it matches that the project's calls have named lately, and how long it lasts.
 * Pure: the caller reads the provider specs and the audit log.
 */

/** A provider operation, as far as the blast radius names it. */
export interface OperationRef {
  provider: string;
  operation: string;
  method: string;
  endpoint: string;
  /** The policy action and resource it is decided as; `{param}` placeholders stand for any text. */
  action: string;
  resource: string;
}

/** The blast radius of a proposed grant, stored with the request and shown on every surface. */
export interface BlastRadius {
  action: string;
  /** What the grant names: the resource glob when one was asked for, else the resource exactly. */
  resource: string;
  pattern: boolean;
  branch: string | null;
  agent: string;
  /** Provider operations decided as this action, on a resource the grant covers. */
  operations: { provider: string; operation: string; method: string; endpoint: string }[];
  /**
   * For a glob: other resources of this action the project's audited calls (any agent's) named in
   * the last `days`. For approvers only: the agent is never shown other agents' resources.
   */
  seen: { days: number; count: number; sample: string[] } | null;
  ttl_seconds: number;
  /** What the grant would have changed over the agent's audited calls of this action (a simulation). */
  history: GrantHistory | null;
  /** How many times people approved this very scope for this agent before (a rule may be due). */
  approved_before: number;
  /** The same as short sentences, in the order a card shows them (without `seen`: see cardFacts). */
  facts: string[];
}

/** The facts as approvers read them: with the other resources the glob matches, second. */
export function cardFacts(r: BlastRadius): string[] {
  if (!r.seen) return r.facts;
  const { seen } = r;
  const line =
    seen.count === 0
      ? `Matches no other resource the project's calls named in the last ${seen.days} days`
      : `Also matches ${seen.count} other resource${seen.count === 1 ? "" : "s"} the project's calls named in the last ${seen.days} days: ${seen.sample.map(shown).join(", ")}${seen.count > seen.sample.length ? ", …" : ""}`;
  return [r.facts[0]!, line, ...r.facts.slice(1)];
}

/** The blast radius as the agent may see it: without other agents' resources. */
export function forAgent(r: BlastRadius): BlastRadius {
  return { ...r, seen: null };
}

/**
 * A resource as a fact names it: at most 120 characters, and whitespace, control and format
 * characters (line breaks, bidi overrides) written as escapes, so that a resource an agent made
 * up cannot pass for more of the card's lines.
 */
export function shown(resource: string): string {
  const clean = resource.replace(/[\s\p{C}]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
  return clean.length > 120 ? `${clean.slice(0, 119)}…` : clean;
}

/** The agent's past calls the grant would have allowed, from the audit log. */
export interface GrantHistory {
  days: number;
  /** Denied calls it would have allowed, and how many of those were refused by constraints or deny patterns. */
  allowed_calls: number;
  /** How many distinct calls (resource and branch) those were. */
  distinct: number;
  refusals_lifted: number;
  /** Calls not decided again (their answer turns on parameters or state the audit does not keep). */
  undetermined: number;
  /** The newest of them, one per distinct call: the last line's event id, and how many there were. */
  examples: { event_id: string; resource: string; code: string | null; count: number; at: string }[];
}

/** Approvals of the same scope after which a card suggests remembering it as a rule. */
export const REMEMBER_AFTER = 3;

/** How many of the other resources a card names (the count says how many there are). */
export const SEEN_SAMPLE = 5;

/** An operation's action or resource template as a glob: its `{param}` placeholders match any text. */
function templateGlob(template: string): string {
  return escapeGlob(template).replace(/\\\{[^}]*\\\}/g, "*");
}

/** Whether a grant for `call` reaches operation `o`: its action, and a resource the grant covers. */
function reaches(o: OperationRef, call: ScopedCall): boolean {
  if (!globsOverlap(templateGlob(o.action), escapeGlob(call.action))) return false;
  if (call.resource === "") return true;
  return globsOverlap(templateGlob(o.resource), call.resourceGlob ?? escapeGlob(call.resource));
}

/**
 * The blast radius of a grant for `call` to `agent` for `ttlSeconds`. `recent` is the distinct
 * resources the project's audited calls of this action named in the last `days` (any order).
 */
export function blastRadius(input: {
  call: ScopedCall;
  agent: string;
  ttlSeconds: number;
  operations: readonly OperationRef[];
  recent: { days: number; resources: readonly string[] } | undefined;
  history?: GrantHistory | undefined;
  approvedBefore?: number | undefined;
}): BlastRadius {
  const { call, agent, ttlSeconds } = input;
  const glob = call.resourceGlob;
  const operations = input.operations
    .filter((o) => reaches(o, call))
    .map(({ provider, operation, method, endpoint }) => ({ provider, operation, method, endpoint }))
    .sort((a, b) => `${a.provider} ${a.operation}`.localeCompare(`${b.provider} ${b.operation}`));
  let seen: BlastRadius["seen"] = null;
  if (glob !== undefined && input.recent) {
    const g = compileGlob(glob);
    const others = g.ok
      ? [...new Set(input.recent.resources)].filter((r) => r !== call.resource && g.value.match(r)).sort()
      : [];
    seen = { days: input.recent.days, count: others.length, sample: others.slice(0, SEEN_SAMPLE) };
  }
  const facts: string[] = [];
  if (glob !== undefined)
    facts.push(
      `Covers every resource matching ${shown(glob)}, not only ${shown(call.resource)} (the call that was denied)`,
    );
  else if (call.resource === "") facts.push(`Covers every call of ${call.action} (it names no resource)`);
  else facts.push(`Only ${shown(call.resource)}: no other resource`);
  if (call.branch !== undefined) facts.push(`Only branch ${shown(call.branch)}`);
  facts.push("Any parameters: a grant from a request sets no limits on them");
  facts.push(
    operations.length === 0
      ? `Provider operations: none decided as ${call.action} (it covers the calls the agent makes itself)`
      : `Opens ${operations.length === 1 ? "1 provider operation" : `${operations.length} provider operations`}: ${operations.map((o) => `${o.provider} ${o.operation} (${o.method} ${o.endpoint})`).join(", ")}`,
  );
  facts.push(
    `Only for ${agent}, for ${formatDuration(ttlSeconds)} after approval; then it expires on its own`,
  );
  const h = input.history;
  if (h) facts.push(historyFact(h, agent));
  const before = input.approvedBefore ?? 0;
  if (before >= REMEMBER_AFTER)
    facts.push(
      `Approved ${before} times before for ${agent}: once approved, Remember makes it a permanent rule of the policy file`,
    );
  return {
    action: call.action,
    resource: glob ?? call.resource,
    pattern: glob !== undefined,
    branch: call.branch ?? null,
    agent,
    operations,
    seen,
    ttl_seconds: ttlSeconds,
    history: h ?? null,
    approved_before: before,
    facts,
  };
}

/** "In the last 30 days it would have allowed 3 of bot's denied calls (…)". */
function historyFact(h: GrantHistory, agent: string): string {
  const head = `In the last ${h.days} days it would have allowed`;
  if (h.allowed_calls === 0) return `${head} none of ${agent}'s denied calls`;
  const calls = `${h.allowed_calls} of ${agent}'s denied call${h.allowed_calls === 1 ? "" : "s"}`;
  const which = h.examples
    .map((e) => `${e.resource ? shown(e.resource) : "(no resource)"} ×${e.count}`)
    .join(", ");
  const lifted =
    h.refusals_lifted === 0
      ? "none was refused by a parameter constraint or deny pattern"
      : `${h.refusals_lifted} of them were refused by a parameter constraint or deny pattern`;
  return `${head} ${calls} (${which}${h.distinct > h.examples.length ? ", …" : ""}); ${lifted}`;
}
