import type {
  Call,
  CompiledConstraint,
  CompiledGrant,
  CompiledProject,
  Decision,
  DenyCode,
  Glob,
  PolicyIndex,
} from "../../src/policy/index.js";

/*
 * The decision engine as it was before answers were remembered (src/policy/evaluate.ts at
 * 7917e05), kept verbatim as an independent reference: the memoized and the unmemoized evaluate
 * must both give exactly its answers. Only normaliseCommand is the shipped one (its fast path is
 * checked against the regex rewrite in decision-memo.test.ts).
 */
import { normaliseCommand } from "../../src/policy/index.js";

/**
 * Decides a call. Pure: no I/O, and the time comes in as `nowMs`.
 *
 * Deny by default. A call is allowed only if some grant of its project covers its service, action,
 * resource, branch and agent (directly or by role), is not expired, and its parameter constraints
 * hold; and no deny pattern of any covering grant matches (deny wins). A DENY explains itself with
 * the most specific reason found: a constraint that failed says more than a resource that did not
 * match, which says more than "nothing grants this service".
 *
 * This is the hot path of the gateway: it allocates only its result (and, for a DENY, the reason),
 * and builds the reason once, for the one failure it reports.
 */
export function referenceEvaluate(index: PolicyIndex, call: Call, nowMs: number): Decision {
  const project = index.projects.get(call.project);
  if (project === undefined) {
    return deny("no_project", `no policy for project ${call.project}`, undefined, undefined);
  }
  return referenceEvaluateIn(project, call, nowMs);
}

/** The decision on `call` by one compiled project (for example a revision read under its lock). */
export function referenceEvaluateIn(project: CompiledProject, call: Call, nowMs: number): Decision {
  const roles = project.agentRoles.get(call.agent);
  if (roles === undefined) {
    return deny(
      "unknown_agent",
      `agent ${clip(call.agent)} is not in project ${project.name}`,
      undefined,
      project.revision,
    );
  }
  const s = resetScan();

  let denied = false;
  const exact = project.exactActions.get(call.action);
  if (exact !== undefined) {
    for (let i = 0; i < exact.length && !denied; i++) denied = consider(exact[i]!, call, roles, nowMs);
  }
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
  if (svc.patterned.length > 0 && !denied) {
    const verb = call.action.slice(colon + 1);
    for (let i = 0; i < svc.patterned.length && !denied; i++) {
      const g = svc.patterned[i]!;
      if (matchesAny(g.actionPatterns, verb)) denied = consider(g, call, roles, nowMs);
    }
  }
  if (denied) return deny("deny_pattern", s.denied, s.deniedBy?.id, project.revision);
  if (s.allow !== undefined) {
    return {
      decision: "ALLOW",
      reason: s.allow.allowReason,
      grantId: s.allow.id,
      expiresAt: s.allow.expiresAt,
      approvedBy: s.allow.def.approvedBy,
      revision: project.revision,
    };
  }
  if (s.failed === undefined) {
    return deny(
      "no_action_grant",
      `no policy grants ${clip(call.action)} for ${project.name}`,
      undefined,
      project.revision,
    );
  }
  return failure(s.failed, s.rank, s.detail, call, project);
}

/** Failure ranks: the higher, the more specific (and useful) the reason. */
const AGENT = 1;
const RESOURCE = 2;
const NO_BRANCH = 3;
const BRANCH = 4;
const EXPIRED = 5;
const CONSTRAINT = 6;

interface ScanState {
  allow: CompiledGrant | undefined;
  rank: number;
  failed: CompiledGrant | undefined;
  /** For a constraint failure: what failed. */
  detail: string;
  denied: string;
  deniedBy: CompiledGrant | undefined;
}

// evaluate() is synchronous and not re-entrant, so one scratch state serves every call.
const scan: ScanState = {
  allow: undefined,
  rank: 0,
  failed: undefined,
  detail: "",
  denied: "",
  deniedBy: undefined,
};

/** Checks one grant against the call; true when one of its deny patterns matched (deny wins). */
function consider(g: CompiledGrant, call: Call, roles: ReadonlySet<string>, nowMs: number): boolean {
  const s = scan;
  if (!coversAgent(g, call.agent, roles)) return fail(g, AGENT);
  if (g.resources !== undefined && !matchesAny(g.resources, call.resource)) return fail(g, RESOURCE);
  if (g.branches !== undefined) {
    if (call.branch === undefined) return fail(g, NO_BRANCH);
    if (!matchesAny(g.branches, call.branch)) return fail(g, BRANCH);
  }
  // The grant covers this call: its deny patterns apply even if it is expired or a constraint fails.
  if (g.denyResources.length > 0 || g.denyText.length > 0) {
    const denied = denyMatch(g, call);
    if (denied !== undefined) {
      s.denied = denied;
      s.deniedBy = g;
      return true;
    }
  }
  if (g.expiresAt !== undefined && nowMs >= g.expiresAt) return fail(g, EXPIRED);
  for (const c of g.constraints) {
    const problem = checkConstraint(c, call.params);
    if (problem !== undefined) {
      if (CONSTRAINT > s.rank) s.detail = problem;
      return fail(g, CONSTRAINT);
    }
  }
  if (s.allow === undefined) s.allow = g;
  return false;
}

/** Records a grant that does not allow the call, if its reason is the most specific so far. */
function resetScan(): ScanState {
  scan.allow = undefined;
  scan.rank = 0;
  scan.failed = undefined;
  scan.detail = "";
  scan.denied = "";
  scan.deniedBy = undefined;
  return scan;
}

function fail(g: CompiledGrant, rank: number): false {
  if (rank > scan.rank) {
    scan.rank = rank;
    scan.failed = g;
  }
  return false;
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

function coversAgent(g: CompiledGrant, agent: string, roles: ReadonlySet<string>): boolean {
  if (g.agents === undefined && g.roles === undefined) return true;
  if (g.agents?.has(agent)) return true;
  if (g.roles !== undefined) for (const r of roles) if (g.roles.has(r)) return true;
  return false;
}

function matchesAny(globs: readonly Glob[], s: string): boolean {
  for (let i = 0; i < globs.length; i++) if (globs[i]!.match(s)) return true;
  return false;
}

function denyMatch(g: CompiledGrant, call: Call): string | undefined {
  for (const p of g.denyResources) {
    if (p.match(call.resource))
      return `resource ${clip(call.resource)} matches deny pattern "${p.source}" of grant ${g.id}`;
  }
  if (g.denyText.length === 0) return undefined;
  const texts: string[] = [];
  if (!collectStrings(call.params, texts)) {
    // Fail closed: what cannot be checked against the deny patterns is not allowed.
    return `the call's parameters are too large or too deeply nested to check against the deny patterns of grant ${g.id}`;
  }
  for (const raw of texts) {
    const text = normaliseCommand(raw);
    for (const d of g.denyText) {
      if (text.includes(d)) return `command matches deny pattern "${d}" of grant ${g.id}`;
    }
  }
  return undefined;
}

const COLLECT_MAX_DEPTH = 32;
const COLLECT_MAX_STRINGS = 10_000;

/** Gathers every string in `params`; false when there are more than can be checked. */
function collectStrings(params: unknown, out: string[]): boolean {
  const stack: [unknown, number][] = [[params, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === "string") {
      if (out.length >= COLLECT_MAX_STRINGS) return false;
      out.push(v);
    } else if (v !== null && typeof v === "object") {
      if (depth >= COLLECT_MAX_DEPTH) return false;
      for (const x of Array.isArray(v) ? v : Object.values(v)) stack.push([x, depth + 1]);
    }
  }
  return true;
}

const DECIMAL = /^-?\d{1,30}(\.\d{1,30})?$/;

function checkConstraint(
  c: CompiledConstraint,
  params: Record<string, unknown> | undefined,
): string | undefined {
  let v: unknown = params;
  for (const k of c.path) {
    if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, k)) {
      return `the call has no parameter ${c.param}, which is limited`;
    }
    v = (v as Record<string, unknown>)[k];
  }
  if (c.max !== undefined || c.min !== undefined) {
    const n = typeof v === "number" ? v : typeof v === "string" && DECIMAL.test(v) ? Number(v) : Number.NaN;
    if (!Number.isFinite(n)) return `parameter ${c.param} must be a number`;
    if (c.max !== undefined && n > c.max) return `${c.param} ${n} exceeds max ${c.max}`;
    if (c.min !== undefined && n < c.min) return `${c.param} ${n} is below min ${c.min}`;
  }
  if (c.in !== undefined || c.notIn !== undefined || c.pattern !== undefined) {
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      return `parameter ${c.param} must be a single value`;
    }
    const text = String(v);
    if (c.in !== undefined && !c.in.has(text)) return `${c.param} ${clip(text)} is not in ${c.inText}`;
    if (c.notIn?.has(text)) return `${c.param} ${clip(text)} is one of the refused values ${c.notInText}`;
    if (c.pattern !== undefined && !c.pattern.match(text)) {
      return `${c.param} ${clip(text)} does not match pattern "${c.pattern.source}"`;
    }
  }
  return undefined;
}

function deny(
  code: DenyCode,
  reason: string,
  grantId: string | undefined,
  revision: number | undefined,
): Decision {
  return { decision: "DENY", code, reason, grantId, revision };
}

/** Keeps agent-supplied text in reasons short. */
function clip(s: string, max = 200): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
