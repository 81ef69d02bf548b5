import { normaliseCommand } from "./command.js";
import type { CompiledGrant, CompiledProject, PolicyIndex } from "./compile.js";
import { ActionEntry, type DecisionMemo, MemoEntry, memoOf, NO_GRANTS } from "./decision-memo.js";
import { checkConstraint, clip, matchesAny } from "./parameters.js";
import type { Call, Decision, DenyCode } from "./types.js";

/**
 * Decides a call. Pure: no I/O, and the time comes in as `nowMs`.
 *
 * Deny by default. A call is allowed only if some grant of its project covers its service, action,
 * resource, branch and agent (directly or by role), is not expired, and its parameter constraints
 * hold; and no deny pattern of any covering grant matches (deny wins). A DENY explains itself with
 * the most specific reason found: a constraint that failed says more than a resource that did not
 * match, which says more than "nothing grants this service".
 *
 * This is the hot path of the gateway. Answers are remembered per compiled project (see
 * decision-memo.ts): a call repeated under the same revision is answered by a few Map lookups,
 * without allocating; a new call costs what `evaluateUnmemoized` costs, plus remembering it (its
 * agent and action on their first call, its resource's entry from their second on). The answer
 * is always exactly what `evaluateUnmemoized` returns for that call at that time. A remembered
 * answer is shared and frozen: callers must not change it.
 */
export function evaluate(index: PolicyIndex, call: Call, nowMs: number): Decision {
  const project = index.projects.get(call.project);
  if (project === undefined) return noProject(call);
  return evaluateIn(project, call, nowMs);
}

/**
 * The decision on `call` by one compiled project (for example a revision read under its lock),
 * with that project's memo.
 */
export function evaluateIn(project: CompiledProject, call: Call, nowMs: number): Decision {
  const memo = memoOf(project);
  const a = memo.action(call);
  if (a === undefined) return decideAction(memo, project, call, nowMs);
  if (a.answer !== undefined) return a.answer;
  const e = a.find(call);
  if (e === undefined) return decideResource(memo, a, project, call, nowMs, false);
  if (!(e instanceof MemoEntry)) return e;
  const fixed = e.decision;
  if (fixed === undefined) return decidePlanned(project, call, nowMs, e);
  if (nowMs >= e.from && nowMs < e.until) return fixed;
  return decideResource(memo, a, project, call, nowMs, true);
}

/** `evaluate` without the memo: every step, every time (the reference the memo must agree with). */
export function evaluateUnmemoized(index: PolicyIndex, call: Call, nowMs: number): Decision {
  const project = index.projects.get(call.project);
  if (project === undefined) return noProject(call);
  return evaluateInUnmemoized(project, call, nowMs);
}

/** `evaluateIn` without the memo. */
export function evaluateInUnmemoized(project: CompiledProject, call: Call, nowMs: number): Decision {
  const roles = project.agentRoles.get(call.agent);
  if (roles === undefined) return unknownAgent(project, call);
  const early = candidatesOf(project, call, roles);
  if (early !== undefined) return early;
  const n = coveringOf(call, candidates, nCandidates);
  return decideCovered(project, call, nowMs, covering, n);
}

/*
 * A decision is made in three steps, each depending on less of the call than the next:
 *   1. candidatesOf (agent and action): the grants of the call's service whose actions match and
 *      that cover the agent; or an answer that needs nothing more (invalid action, no grant for the
 *      service). Agent failures are recorded here.
 *   2. coveringOf (resource and branch): of those, the grants that cover the resource and branch.
 *      Resource and branch failures are recorded here.
 *   3. decideCovered (parameters and time): deny patterns, expiry and constraints of the covering
 *      grants, in order; then the answer.
 * The memo keeps the result of step 1 per (agent, action), and per (resource, branch) either the
 * answer (when no covering grant looks at parameters; valid until the next expiry that could change
 * it) or the covering grants, so that only step 3 runs again.
 */

/** Failure ranks: the higher, the more specific (and useful) the reason. */
const AGENT = 1;
const RESOURCE = 2;
const NO_BRANCH = 3;
const BRANCH = 4;
const EXPIRED = 5;
const CONSTRAINT = 6;

interface ScanState {
  rank: number;
  failed: CompiledGrant | undefined;
  /** For a constraint failure: what failed. */
  detail: string;
  /** For a deny pattern that matched: which kind (DENY_*), and the pattern. */
  denyKind: number;
  denyPattern: string;
}

// Decisions are synchronous and not re-entrant, so one scratch state serves every call.
const scan: ScanState = { rank: 0, failed: undefined, detail: "", denyKind: 0, denyPattern: "" };
const candidates: CompiledGrant[] = [];
let nCandidates = 0;
/** After candidatesOf: the grant list that holds exactly the candidates, if there is one. */
let candidatesList: readonly CompiledGrant[] | undefined;
const covering: CompiledGrant[] = [];

/**
 * Step 1: fills `candidates` (the grants whose action matches and that cover the agent, in the
 * order they are considered) and records agent failures in `scan`; or returns an answer that
 * needs nothing more.
 */
function candidatesOf(
  project: CompiledProject,
  call: Call,
  roles: ReadonlySet<string>,
): Decision | undefined {
  scan.rank = 0;
  scan.failed = undefined;
  scan.detail = "";
  nCandidates = 0;
  const exact = project.exactActions.get(call.action);
  if (exact !== undefined) for (let i = 0; i < exact.length; i++) candidate(exact[i]!, call.agent, roles);
  candidatesList = exact !== undefined && nCandidates === exact.length ? exact : NO_GRANTS;
  const colon = call.action.indexOf(":");
  if (colon <= 0 || colon === call.action.length - 1) {
    return deny(
      "invalid_action",
      `action ${clip(call.action)} is not of the form service:verb`,
      undefined,
      project.revision,
    );
  }
  const svc = project.services.get(call.action.slice(0, colon));
  if (svc === undefined) {
    return deny(
      "no_service_grant",
      `no policy grants ${call.action.slice(0, colon)}:* for ${project.name}`,
      undefined,
      project.revision,
    );
  }
  if (svc.patterned.length > 0) {
    const verb = call.action.slice(colon + 1);
    for (let i = 0; i < svc.patterned.length; i++) {
      const g = svc.patterned[i]!;
      if (matchesAny(g.actionPatterns, verb)) candidate(g, call.agent, roles);
    }
  }
  if (nCandidates !== candidatesList.length) candidatesList = undefined;
  if (scan.failed === undefined && nCandidates === 0) {
    return deny(
      "no_action_grant",
      `no policy grants ${clip(call.action)} for ${project.name}`,
      undefined,
      project.revision,
    );
  }
  return undefined;
}

function candidate(g: CompiledGrant, agent: string, roles: ReadonlySet<string>): void {
  if (coversAgent(g, agent, roles)) candidates[nCandidates++] = g;
  else fail(g, AGENT);
}

/**
 * Step 2: copies the grants of `from[0..n)` that cover the call's resource and branch into
 * `covering`, records the others' failures in `scan`, and returns how many cover.
 */
function coveringOf(call: Call, from: readonly CompiledGrant[], n: number): number {
  let k = 0;
  for (let i = 0; i < n; i++) {
    const g = from[i]!;
    if (g.resources !== undefined && !matchesAny(g.resources, call.resource)) fail(g, RESOURCE);
    else if (g.branches !== undefined && call.branch === undefined) fail(g, NO_BRANCH);
    else if (g.branches !== undefined && !matchesAny(g.branches, call.branch!)) fail(g, BRANCH);
    else covering[k++] = g;
  }
  return k;
}

/**
 * Step 3: checks the grants of `grants[0..n)` (which cover the call) in order, after the failures
 * already recorded in `scan`. A covering grant's deny patterns apply even if it is expired or a
 * constraint fails, and the first that matches decides (deny wins). Returns the index of the
 * first grant that allows the call, or DENIED - i when grant i's deny pattern matched (what matched
 * in `scan`), or FAILED (the most specific failure in `scan`).
 */
function scanCovered(call: Call, nowMs: number, grants: readonly CompiledGrant[], n: number): number {
  let allow = -1;
  for (let i = 0; i < n; i++) {
    const g = grants[i]!;
    if ((g.denyResources.length > 0 || g.denyText.length > 0) && denyMatch(g, call)) return DENIED - i;
    if (g.expiresAt !== undefined && nowMs >= g.expiresAt) {
      fail(g, EXPIRED);
      continue;
    }
    let ok = true;
    for (let j = 0; j < g.constraints.length; j++) {
      const problem = checkConstraint(g.constraints[j]!, call.params);
      if (problem !== undefined) {
        if (CONSTRAINT > scan.rank) scan.detail = problem;
        fail(g, CONSTRAINT);
        ok = false;
        break;
      }
    }
    if (ok && allow < 0) allow = i;
  }
  return allow < 0 ? FAILED : allow;
}

const FAILED = -1;
const DENIED = -2;

/** Step 3 and the answer. */
function decideCovered(
  project: CompiledProject,
  call: Call,
  nowMs: number,
  grants: readonly CompiledGrant[],
  n: number,
): Decision {
  const r = scanCovered(call, nowMs, grants, n);
  if (r >= 0) return allowedBy(grants[r]!, project);
  // Step 1 answered already when there was no grant at all, so some grant failed.
  if (r === FAILED) return failure(scan.failed!, scan.rank, scan.detail, call, project);
  const g = grants[DENIED - r]!;
  return deny("deny_pattern", denyReason(g, call), g.id, project.revision);
}

function allowedBy(g: CompiledGrant, project: CompiledProject): Decision {
  return {
    decision: "ALLOW",
    reason: g.allowReason,
    grantId: g.id,
    expiresAt: g.expiresAt,
    approvedBy: g.def.approvedBy,
    revision: project.revision,
  };
}

/**
 * Step 3 for a remembered call whose answer depends on its parameters. An ALLOW, and a DENY by a
 * command deny pattern, depend only on the grant (and the pattern), so they are made once per
 * entry and shared.
 */
function decidePlanned(project: CompiledProject, call: Call, nowMs: number, e: MemoEntry): Decision {
  scan.rank = e.rank;
  scan.failed = e.failed;
  scan.detail = "";
  const r = scanCovered(call, nowMs, e.covering, e.covering.length);
  if (r >= 0) {
    e.allowed ??= [];
    let d = e.allowed[r];
    if (d === undefined) {
      d = Object.freeze(allowedBy(e.covering[r]!, project));
      e.allowed[r] = d;
    }
    return d;
  }
  if (r === FAILED) return failure(scan.failed!, scan.rank, scan.detail, call, project);
  const i = DENIED - r;
  const g = e.covering[i]!;
  if (scan.denyKind !== DENY_COMMAND)
    return deny("deny_pattern", denyReason(g, call), g.id, project.revision);
  e.commandDenied ??= [];
  let byPattern = e.commandDenied[i];
  if (byPattern === undefined) {
    byPattern = new Map();
    e.commandDenied[i] = byPattern;
  }
  let d = byPattern.get(scan.denyPattern);
  if (d === undefined) {
    d = Object.freeze(deny("deny_pattern", denyReason(g, call), g.id, project.revision));
    byPattern.set(scan.denyPattern, d);
  }
  return d;
}

/** A call whose (agent, action) the memo does not know: decided in full, and remembered. */
function decideAction(memo: DecisionMemo, project: CompiledProject, call: Call, nowMs: number): Decision {
  const roles = project.agentRoles.get(call.agent);
  if (roles === undefined) {
    let d = memo.stranger(call.agent);
    if (d === undefined) {
      d = Object.freeze(unknownAgent(project, call));
      memo.rememberStranger(call.agent, d);
    }
    return d;
  }
  const early = candidatesOf(project, call, roles);
  const a =
    early === undefined
      ? new ActionEntry(undefined, candidatesList ?? candidates.slice(0, nCandidates), scan.rank, scan.failed)
      : new ActionEntry(Object.freeze(early), NO_GRANTS, 0, undefined);
  memo.storeAction(call, a);
  if (early !== undefined) return early;
  // The resource's answer is remembered from the (agent, action)'s second call on: one-off
  // actions cost the memo one entry, not two.
  const n = coveringOf(call, candidates, nCandidates);
  return decideCovered(project, call, nowMs, covering, n);
}

/**
 * A call whose (agent, action) step the memo has, but not a valid entry for its resource and
 * branch (`replacing`: an out of date one): steps 2 and 3, and the entry remembered.
 */
function decideResource(
  memo: DecisionMemo,
  a: ActionEntry,
  project: CompiledProject,
  call: Call,
  nowMs: number,
  replacing: boolean,
): Decision {
  scan.rank = a.rank;
  scan.failed = a.failed;
  scan.detail = "";
  const n = coveringOf(call, a.candidates, a.candidates.length);
  // Whether the answer depends on the parameters, and the times between which it cannot change.
  let params = false;
  let from = Number.NEGATIVE_INFINITY;
  let until = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const g = covering[i]!;
    if (g.denyText.length > 0 || g.constraints.length > 0) params = true;
    const at = g.expiresAt;
    if (at !== undefined) {
      if (nowMs >= at) {
        if (at > from) from = at;
      } else if (at < until) until = at;
    }
  }
  if (params) {
    const rank = scan.rank;
    const failed = scan.failed;
    const d = decideCovered(project, call, nowMs, covering, n);
    memo.store(a, call, new MemoEntry(undefined, 0, 0, covering.slice(0, n), rank, failed), replacing);
    return d;
  }
  const d = Object.freeze(decideCovered(project, call, nowMs, covering, n));
  const forever = from === Number.NEGATIVE_INFINITY && until === Number.POSITIVE_INFINITY;
  memo.store(a, call, forever ? d : new MemoEntry(d, from, until, NO_GRANTS, 0, undefined), replacing);
  return d;
}

function noProject(call: Call): Decision {
  return deny("no_project", `no policy for project ${call.project}`, undefined, undefined);
}

function unknownAgent(project: CompiledProject, call: Call): Decision {
  return deny(
    "unknown_agent",
    `agent ${clip(call.agent)} is not in project ${project.name}`,
    undefined,
    project.revision,
  );
}

/** Records a grant that does not allow the call, if its reason is the most specific so far. */
function fail(g: CompiledGrant, rank: number): void {
  if (rank > scan.rank) {
    scan.rank = rank;
    scan.failed = g;
  }
}

function failure(
  g: CompiledGrant,
  rank: number,
  detail: string,
  call: Call,
  project: CompiledProject,
): Decision {
  const resource = clip(call.resource || "(no resource)");
  switch (rank) {
    case AGENT:
      return deny(
        "agent_not_covered",
        `grant ${g.id} covers ${call.action} only for ${g.limitsText}; agent ${clip(call.agent)} is not one of them`,
        g.id,
        project.revision,
      );
    case RESOURCE:
      return deny(
        "resource_not_covered",
        `grant ${g.id} covers ${call.action} only on ${g.resourcesText}, not ${resource}`,
        g.id,
        project.revision,
      );
    case NO_BRANCH:
      return deny(
        "branch_not_covered",
        `grant ${g.id} covers ${call.action} only on branches ${g.branchesText}; the call names no branch`,
        g.id,
        project.revision,
      );
    case BRANCH:
      return deny(
        "branch_not_covered",
        `grant ${g.id} covers ${call.action} on ${resource} only for branches ${g.branchesText}, not ${clip(call.branch ?? "")}`,
        g.id,
        project.revision,
      );
    case EXPIRED:
      return deny("grant_expired", g.expiredReason, g.id, project.revision);
    default:
      return deny("constraint_failed", `${detail} in grant ${g.id}`, g.id, project.revision);
  }
}

export function coversAgent(g: CompiledGrant, agent: string, roles: ReadonlySet<string>): boolean {
  if (g.agents === undefined && g.roles === undefined) return true;
  if (g.agents?.has(agent)) return true;
  if (g.roles !== undefined) for (const r of roles) if (g.roles.has(r)) return true;
  return false;
}

/** What matched when denyMatch found a deny pattern (scan.denyKind). */
const DENY_RESOURCE = 1;
const DENY_UNCHECKABLE = 2;
const DENY_COMMAND = 3;

/** Whether a deny pattern of `g` refuses the call; what matched is left in `scan`. */
function denyMatch(g: CompiledGrant, call: Call): boolean {
  for (const p of g.denyResources) {
    if (p.match(call.resource)) {
      scan.denyKind = DENY_RESOURCE;
      scan.denyPattern = p.source;
      return true;
    }
  }
  if (g.denyText.length === 0) return false;
  const n = collectStrings(call.params);
  if (n < 0) {
    // Fail closed: what cannot be checked against the deny patterns is not allowed.
    scan.denyKind = DENY_UNCHECKABLE;
    return true;
  }
  let found = false;
  for (let i = 0; i < n && !found; i++) {
    const text = normaliseCommand(texts[i]!);
    for (const d of g.denyText) {
      if (text.includes(d)) {
        scan.denyKind = DENY_COMMAND;
        scan.denyPattern = d;
        found = true;
        break;
      }
    }
  }
  // The scratch arrays do not keep the call's strings alive.
  for (let i = 0; i < n; i++) texts[i] = undefined;
  return found;
}

/** The reason of a DENY by a deny pattern of `g`, from what denyMatch left in `scan`. */
function denyReason(g: CompiledGrant, call: Call): string {
  switch (scan.denyKind) {
    case DENY_RESOURCE:
      return `resource ${clip(call.resource)} matches deny pattern "${scan.denyPattern}" of grant ${g.id}`;
    case DENY_UNCHECKABLE:
      return `the call's parameters are too large or too deeply nested to check against the deny patterns of grant ${g.id}`;
    default:
      return `${g.service === "tools" ? "command" : "an argument"} matches deny pattern "${scan.denyPattern}" of grant ${g.id}`;
  }
}

const COLLECT_MAX_DEPTH = 32;
const COLLECT_MAX_STRINGS = 10_000;

// Scratch space of collectStrings, reused so that checking a command allocates nothing.
const texts: (string | undefined)[] = [];
const stackValues: unknown[] = [];
const stackDepths: number[] = [];

/**
 * Gathers every string in `params`, objects' keys included, into `texts` (depth first, last value
 * first) and returns how many; -1 when there are more than can be checked.
 */
function collectStrings(params: unknown): number {
  let n = 0;
  let top = 0;
  stackValues[top] = params;
  stackDepths[top] = 0;
  top++;
  while (top > 0) {
    top--;
    const v = stackValues[top];
    const depth = stackDepths[top]!;
    stackValues[top] = undefined;
    if (typeof v === "string") {
      if (n >= COLLECT_MAX_STRINGS) {
        n = -1;
        break;
      }
      texts[n++] = v;
    } else if (v !== null && typeof v === "object") {
      if (depth >= COLLECT_MAX_DEPTH) {
        n = -1;
        break;
      }
      // An object's keys are text of the call too (`{"/etc/cron.d/x": "…"}`): checked like its values.
      const xs: readonly unknown[] = Array.isArray(v) ? v : [...Object.keys(v), ...Object.values(v)];
      for (let i = 0; i < xs.length; i++) {
        stackValues[top] = xs[i];
        stackDepths[top] = depth + 1;
        top++;
      }
    }
  }
  for (let i = 0; i < top; i++) stackValues[i] = undefined;
  if (n < 0) for (let i = 0; i < COLLECT_MAX_STRINGS; i++) texts[i] = undefined;
  // A huge call's parameters do not leave huge scratch arrays behind.
  if (stackValues.length > 4096) {
    stackValues.length = 0;
    stackDepths.length = 0;
  }
  return n;
}

function deny(
  code: DenyCode,
  reason: string,
  grantId: string | undefined,
  revision: number | undefined,
): Decision {
  return { decision: "DENY", code, reason, grantId, revision };
}
