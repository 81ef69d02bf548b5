import type { CompiledProject } from "./compile.js";
import { evaluateIn } from "./evaluate.js";
import { LIFTABLE_DENIALS } from "./scope.js";
import type { Decision } from "./types.js";

/**
 * What a policy change would have changed, decided again over audited calls (pure). Each past call
 * is decided by the policy in force (`before`) and by the proposal (`after`) at the moment it was
 * made; the calls the two answer differently are what the change would have allowed or denied.
 * Nothing is replayed upstream: the audit log holds the call (agent, action, resource, branch),
 * not its parameters, so an answer that turns on parameters is taken from what was recorded when
 * it can be, and otherwise counted as undetermined. A call counts only when it was answered as the
 * policy in force answers it: one a temporary grant or an older policy answered otherwise was not
 * this change's to make.
 */

/** Audited calls, grouped: the same call with the same recorded answer (over the window, or within an hour). */
export interface CallGroup {
  agent: string;
  action: string;
  resource: string;
  branch: string | undefined;
  decision: "ALLOW" | "DENY";
  /** The recorded deny code (undefined for an ALLOW). */
  code: string | undefined;
  count: number;
  /** The last call of the group: its audit sequence number and time (the group is decided then). */
  lastSeq: number;
  lastTs: number;
  /** The first call's time. */
  firstTs: number;
}

/** A group the proposal answers differently. */
export interface ChangedGroup extends CallGroup {
  /** The proposal's answer and why. */
  now: "ALLOW" | "DENY";
  reason: string;
}

export interface Simulation {
  /** Calls (audit lines) considered. */
  calls: number;
  /** Denied (under the policy in force) and allowed by the proposal, newest first. */
  allowed: ChangedGroup[];
  /** Allowed (under the policy in force) and denied by the proposal, newest first. */
  denied: ChangedGroup[];
  allowedCalls: number;
  deniedCalls: number;
  /** Of `allowedCalls`: calls refused by parameter constraints or deny patterns when they were made. */
  refusalsLifted: number;
  /**
   * Calls not decided again: refused for what the policy alone does not say (a rate limit, a pact,
   * a used one-shot approval, sensitive data), or whose new answer turns on their parameters.
   */
  undetermined: number;
}

/**
 * Deny codes the policy decides from the call alone (evaluateIn), so a past call can be decided
 * again: those a grant can lift, a call a person must approve, and the policy's own refusals (not
 * a used one-shot approval: that is state).
 */
const POLICY_CODES: ReadonlySet<string> = new Set([
  ...LIFTABLE_DENIALS,
  "approval_required",
  "no_project",
  "unknown_agent",
  "constraint_failed",
  "deny_pattern",
  "invalid_action",
]);

/** Refusals whose outcome depends on the call's parameters (or, for tools, its command text). */
function turnsOnParams(d: Decision, action: string): boolean {
  if (d.decision !== "DENY") return false;
  return (
    d.code === "constraint_failed" ||
    d.code === "approval_required" ||
    (d.code === "deny_pattern" && action.startsWith("tools:"))
  );
}

/** What a refusal for parameters was decided by (the grant's limits, or the approval rules), to compare. */
function paramRule(project: CompiledProject, d: Decision): string {
  if (d.decision !== "DENY") return "";
  if (d.code === "approval_required") return JSON.stringify(project.requireApproval.map((r) => r.def));
  const g = project.document.grants.find((x) => x.id === d.grantId);
  return JSON.stringify([d.code, d.grantId, g?.constraints, g?.deny, g?.resources]);
}

/**
 * Whether either policy answers the group's call differently at its first and its last call (a
 * grant expired in between): then the group is decided in smaller pieces. Policies only lose
 * grants as time passes, so answers equal at both ends are the answer in between.
 */
export function spansChange(before: CompiledProject, after: CompiledProject, g: CallGroup): boolean {
  if (g.firstTs === g.lastTs) return false;
  const call = callOf(before, g);
  return (
    evaluateIn(before, call, g.firstTs).decision !== evaluateIn(before, call, g.lastTs).decision ||
    evaluateIn(after, call, g.firstTs).decision !== evaluateIn(after, call, g.lastTs).decision
  );
}

/** The audited call of a group, as the policy decides it. */
function callOf(project: CompiledProject, g: CallGroup) {
  return { agent: g.agent, project: project.name, action: g.action, resource: g.resource, branch: g.branch };
}

const LIFTED_REFUSALS: ReadonlySet<string> = new Set(["constraint_failed", "deny_pattern"]);

export function simulate(
  before: CompiledProject,
  after: CompiledProject,
  groups: Iterable<CallGroup>,
): Simulation {
  const out: Simulation = {
    calls: 0,
    allowed: [],
    denied: [],
    allowedCalls: 0,
    deniedCalls: 0,
    refusalsLifted: 0,
    undetermined: 0,
  };
  for (const g of groups) {
    out.calls += g.count;
    const call = callOf(before, g);
    const a = evaluateIn(after, call, g.lastTs);
    const b = evaluateIn(before, call, g.lastTs);
    if (a.decision === b.decision) {
      // Both refuse it for its parameters: unchanged only if by the same rule, the same way.
      if (turnsOnParams(a, g.action) && paramRule(after, a) !== paramRule(before, b))
        out.undetermined += g.count;
      continue;
    }
    // Refused for what the policy alone does not say (a rate limit, a pact, ...): that stands.
    if (g.decision === "DENY" && !POLICY_CODES.has(g.code ?? "")) {
      out.undetermined += g.count;
      continue;
    }
    // The proposal's refusal for parameters cannot be told; the policy in force's, decided without
    // them, is what was recorded, or (recorded as allowed) its parameters passed.
    if (turnsOnParams(a, g.action)) {
      out.undetermined += g.count;
      continue;
    }
    const recordedAsBefore = g.decision === b.decision && (b.decision === "ALLOW" || g.code === b.code);
    if (!recordedAsBefore) {
      // Allowed when made although the policy in force (without parameters) refuses it for them:
      // allowed either way. Otherwise the call was answered by something the change does not
      // touch (a grant in force then, an older policy): the change made no difference to it.
      continue;
    }
    const changed: ChangedGroup = { ...g, now: a.decision, reason: a.reason };
    if (a.decision === "ALLOW") {
      out.allowed.push(changed);
      out.allowedCalls += g.count;
      if (LIFTED_REFUSALS.has(g.code ?? "")) out.refusalsLifted += g.count;
    } else {
      out.denied.push(changed);
      out.deniedCalls += g.count;
    }
  }
  const newest = (x: ChangedGroup, y: ChangedGroup) => y.lastSeq - x.lastSeq;
  out.allowed.sort(newest);
  out.denied.sort(newest);
  return out;
}
