import { normaliseCommand } from "./command.js";
import type { CompiledConstraint, CompiledGrant, PolicyIndex } from "./compile.js";
import type { Call, Decision, DenyCode } from "./types.js";

/**
 * Decides a call. Pure: no I/O, and the time comes in as `nowMs`.
 *
 * Deny by default. A call is allowed only if some grant of its project covers its service, action,
 * resource, branch and agent (directly or by role), is not expired, and its parameter constraints
 * hold; and no deny pattern of any covering grant matches (deny wins). A DENY explains itself with
 * the most specific reason found: a constraint that failed says more than a resource that did not
 * match, which says more than "nothing grants this service".
 */
export function evaluate(index: PolicyIndex, call: Call, nowMs: number): Decision {
  const project = index.projects.get(call.project);
  if (project === undefined) {
    return deny("no_project", `no policy for project ${call.project}`, undefined, undefined);
  }
  const roles = project.agentRoles.get(call.agent);
  if (roles === undefined) {
    return deny(
      "unknown_agent",
      `agent ${clip(call.agent)} is not in project ${project.name}`,
      undefined,
      project.revision,
    );
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
  const service = call.action.slice(0, colon);
  const verb = call.action.slice(colon + 1);
  const svc = project.services.get(service);
  if (svc === undefined) {
    return deny(
      "no_service_grant",
      `no policy grants ${service}:* for ${project.name}`,
      undefined,
      project.revision,
    );
  }

  const state: ScanState = {
    allow: undefined,
    rank: 0,
    code: "no_action_grant",
    reason: "",
    grantId: undefined,
    denied: undefined,
  };
  const exact = svc.exact.get(verb);
  if (exact !== undefined) for (const g of exact) consider(g, call, roles, nowMs, state);
  for (const g of svc.patterned) {
    if (state.denied) break;
    if (matchesAny(g.actionPatterns, verb)) consider(g, call, roles, nowMs, state);
  }
  if (state.denied) return { ...state.denied, revision: project.revision };
  if (state.allow) {
    return {
      decision: "ALLOW",
      reason: state.allow.allowReason,
      grantId: state.allow.id,
      expiresAt: state.allow.expiresAt,
      revision: project.revision,
    };
  }
  if (state.rank === 0) {
    return deny(
      "no_action_grant",
      `no policy grants ${clip(call.action)} for ${project.name}`,
      undefined,
      project.revision,
    );
  }
  return deny(state.code, state.reason, state.grantId, project.revision);
}

interface ScanState {
  allow: CompiledGrant | undefined;
  /** How far the most specific failing grant got: higher is more useful to report. */
  rank: number;
  code: DenyCode;
  reason: string;
  grantId: string | undefined;
  denied: Decision | undefined;
}

function consider(
  g: CompiledGrant,
  call: Call,
  roles: ReadonlySet<string>,
  nowMs: number,
  s: ScanState,
): void {
  if (s.denied) return;
  if (!coversAgent(g, call.agent, roles)) {
    fail(s, 1, "agent_not_covered", g.id, () => agentReason(g, call));
    return;
  }
  if (g.resources !== undefined && !matchesAny(g.resources, call.resource)) {
    fail(
      s,
      2,
      "resource_not_covered",
      g.id,
      () =>
        `grant ${g.id} covers ${call.action} only on ${g.def.resources!.join(", ")}, not ${clip(call.resource || "(no resource)")}`,
    );
    return;
  }
  if (g.branches !== undefined) {
    if (call.branch === undefined) {
      fail(
        s,
        3,
        "branch_not_covered",
        g.id,
        () =>
          `grant ${g.id} covers ${call.action} only on branches ${g.def.branches!.join(", ")}; the call names no branch`,
      );
      return;
    }
    if (!matchesAny(g.branches, call.branch)) {
      fail(
        s,
        3,
        "branch_not_covered",
        g.id,
        () =>
          `grant ${g.id} covers ${call.action} on ${clip(call.resource || "(no resource)")} only for branches ${g.def.branches!.join(", ")}, not ${clip(call.branch!)}`,
      );
      return;
    }
  }
  // The grant covers this call: its deny patterns apply even if it is expired or a constraint fails.
  const denied = denyMatch(g, call);
  if (denied !== undefined) {
    s.denied = deny("deny_pattern", denied, g.id, undefined);
    return;
  }
  if (g.expiresAt !== undefined && nowMs >= g.expiresAt) {
    fail(
      s,
      4,
      "grant_expired",
      g.id,
      () => `grant ${g.id} expired at ${new Date(g.expiresAt!).toISOString()}`,
    );
    return;
  }
  for (const c of g.constraints) {
    const problem = checkConstraint(c, call.params);
    if (problem !== undefined) {
      fail(s, 5, "constraint_failed", g.id, () => `${problem} in grant ${g.id}`);
      return;
    }
  }
  s.allow ??= g;
}

function fail(s: ScanState, rank: number, code: DenyCode, grantId: string, reason: () => string): void {
  if (rank <= s.rank) return;
  s.rank = rank;
  s.code = code;
  s.grantId = grantId;
  s.reason = reason();
}

function coversAgent(g: CompiledGrant, agent: string, roles: ReadonlySet<string>): boolean {
  if (g.agents === undefined && g.roles === undefined) return true;
  if (g.agents?.has(agent)) return true;
  if (g.roles !== undefined) for (const r of roles) if (g.roles.has(r)) return true;
  return false;
}

function agentReason(g: CompiledGrant, call: Call): string {
  const limits: string[] = [];
  if (g.def.agents) limits.push(`agents ${g.def.agents.join(", ")}`);
  if (g.def.roles) limits.push(`roles ${g.def.roles.join(", ")}`);
  return `grant ${g.id} covers ${call.action} only for ${limits.join(" and ")}; agent ${clip(call.agent)} is not one of them`;
}

function matchesAny(globs: readonly { match(s: string): boolean }[], s: string): boolean {
  for (const g of globs) if (g.match(s)) return true;
  return false;
}

function denyMatch(g: CompiledGrant, call: Call): string | undefined {
  for (const p of g.denyResources) {
    if (p.match(call.resource))
      return `resource ${clip(call.resource)} matches deny pattern "${p.source}" of grant ${g.id}`;
  }
  if (g.denyText.length === 0) return undefined;
  const texts: string[] = [];
  collectStrings(call.params, texts, 0);
  for (const raw of texts) {
    const text = normaliseCommand(raw);
    for (const d of g.denyText) {
      if (text.includes(d)) return `command matches deny pattern "${d}" of grant ${g.id}`;
    }
  }
  return undefined;
}

const COLLECT_MAX_DEPTH = 16;
const COLLECT_MAX_STRINGS = 10_000;

function collectStrings(v: unknown, out: string[], depth: number): void {
  if (out.length >= COLLECT_MAX_STRINGS || depth > COLLECT_MAX_DEPTH) return;
  if (typeof v === "string") out.push(v);
  else if (Array.isArray(v)) for (const x of v) collectStrings(x, out, depth + 1);
  else if (v !== null && typeof v === "object")
    for (const x of Object.values(v)) collectStrings(x, out, depth + 1);
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
