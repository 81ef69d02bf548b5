import type { accessRequests, auditEvents } from "../db/schema.js";
import { type BoundCall, callHash } from "../grants/one-shot.js";
import { sha256 } from "../hash.js";
import { type CompiledProject, type Decision, evaluateIn, formatDuration } from "../policy/index.js";
import { classifyRisk } from "../policy/risk.js";
import { grantBlocked, LIFTABLE_DENIALS, type ScopedCall, usesBranches } from "../policy/scope.js";

/**
 * The rules of access requests, pure: what may be filed as a grant, whether a stored request is
 * still what was filed, and whether it still holds under the policy in force. The Butler runs
 * them when a request is filed and again, under the request's and the project's locks, at every
 * approval.
 */

type RequestRow = typeof accessRequests.$inferSelect;
type AuditRow = typeof auditEvents.$inferSelect;

/** A resource a grant may name: no whitespace. */
const RESOURCE_OK = /^\S*$/;
/** A branch a grant may name: no whitespace, ~, ^ or :. */
const BRANCH_OK = /^[^\s~^:]+$/;

export type CheckedCall =
  | { ok: true; decision: Decision }
  | { ok: false; code: "INVALID_INPUT" | "FORBIDDEN" | "PRECONDITION_FAILED"; message: string };

/**
 * Whether a grant for exactly `call` could be written for `agent` under `project` (the checks of
 * filing, run again at every approval). The decision is ALLOW when the policy already allows it.
 */
export function checkGrantCall(
  project: CompiledProject,
  agent: string,
  call: ScopedCall,
  now: Date,
): CheckedCall {
  const fail = (code: "INVALID_INPUT" | "FORBIDDEN" | "PRECONDITION_FAILED", message: string) =>
    ({ ok: false, code, message }) as const;
  if (!/^[a-z0-9][a-z0-9_-]*:\S+$/.test(call.action))
    return fail("INVALID_INPUT", "action: must be service:verb, for example stripe:charges:read");
  if (!RESOURCE_OK.test(call.resource))
    return fail("INVALID_INPUT", "resource: a grant cannot name a resource with whitespace");
  if (call.branch !== undefined && !BRANCH_OK.test(call.branch))
    return fail("INVALID_INPUT", "branch: a grant cannot name a branch with whitespace, ~, ^ or :");
  const blocked = grantBlocked(project, call);
  if (blocked?.kind === "never_grant")
    return fail("FORBIDDEN", `${call.action} is never granted in ${project.name} (settings.never_grant)`);
  const service = call.action.slice(0, call.action.indexOf(":"));
  // A grant without resources or branches covers all of them: never write one for a call that
  // merely left them out, except for tools, whose calls have no resource to speak of.
  if (call.resource === "" && service !== "tools")
    return fail(
      "INVALID_INPUT",
      `resource: the call names no resource, so a grant would cover every resource of ${call.action}; make the call with the resource you need, then ask`,
    );
  if (call.branch === undefined && (service === "git" || usesBranches(project, service)))
    return fail(
      "INVALID_INPUT",
      `branch: ${service} calls in ${project.name} are limited by branch; name the branch`,
    );
  if (blocked?.kind === "governed")
    return fail(
      "PRECONDITION_FAILED",
      `${call.action} on ${call.resourceGlob ?? (call.resource || "(no resource)")} is limited by the parameter constraints or deny patterns of grant ${blocked.grant}; a grant from an access request would bypass them, so change the policy file instead`,
    );
  // Decided against `project` exactly (at approval, the revision read under the project's lock).
  const decision = evaluateIn(project, { agent, project: project.name, ...call }, now.getTime());
  if (decision.decision === "DENY" && !LIFTABLE_DENIALS.has(decision.code))
    return fail("PRECONDITION_FAILED", `an access request cannot lift this: ${decision.reason}`);
  return { ok: true, decision };
}

/**
 * Whether a person may approve exactly `call` once for `agent` under `project` (filing a one-shot
 * request, and again at its approval): only a denial an approval can lift, and never an action
 * `never_grant` names unless a grant in the file allows the call anyway.
 */
export function checkOneShotCall(
  project: CompiledProject,
  agent: string,
  call: BoundCall,
  now: Date,
): { ok: true } | { ok: false; code: "FORBIDDEN" | "PRECONDITION_FAILED"; message: string } {
  const decision = evaluateIn(project, { agent, project: project.name, ...call }, now.getTime());
  if (decision.decision === "ALLOW") return { ok: true };
  if (!LIFTABLE_DENIALS.has(decision.code))
    return {
      ok: false,
      code: "PRECONDITION_FAILED",
      message: `an approval cannot lift this: ${decision.reason}`,
    };
  if (project.neverGrant.some((g) => g.match(call.action)))
    return {
      ok: false,
      code: "FORBIDDEN",
      message: `${call.action} is never granted in ${project.name} (settings.never_grant)`,
    };
  return { ok: true };
}

/** Whether a stored request is what its `access_request.filed` audit line says was filed. */
export function matchesFiled(r: RequestRow, filed: AuditRow): boolean {
  const d = filed.details;
  return (
    filed.type === "access_request.filed" &&
    d.request_id === r.id &&
    filed.agent === r.agent &&
    filed.project === r.project &&
    filed.action === r.action &&
    filed.resource === r.resource &&
    (d.branch ?? null) === r.branch &&
    (d.resource_pattern ?? null) === r.resourceGlob &&
    d.ttl === formatDuration(r.requestedTtlSeconds) &&
    d.risk_tier === r.riskTier &&
    Number(d.approvals_required) === r.approvalsRequired &&
    d.proposal_hash === r.proposalHash &&
    sha256(r.proposalDiff) === r.proposalHash &&
    (r.kind === "one_shot" ? d.call_sha256 === r.callHash : d.call_sha256 === undefined) &&
    (d.reason_sha256 === undefined || d.reason_sha256 === sha256(r.reason))
  );
}

/** For a one-shot request: whether its stored parameters are still those of the call it is bound to. */
export function callMatches(r: RequestRow): boolean {
  if (r.kind !== "one_shot") return true;
  return (
    callHash({
      action: r.action,
      resource: r.resource,
      branch: r.branch ?? undefined,
      params: r.callParams ?? {},
    }) === r.callHash
  );
}

/** Why a pending request no longer holds under `project` (the policy in force), or undefined. */
export function staleUnder(r: RequestRow, project: CompiledProject, now: Date): string | undefined {
  const settings = project.document.settings;
  if (!project.agentRoles.has(r.agent)) return `agent ${r.agent} is no longer in project ${r.project}`;
  const tier = classifyRisk(r.action, settings);
  if (tier !== r.riskTier || settings.approvals[tier] !== r.approvalsRequired)
    return `it now counts as ${tier} risk and needs ${settings.approvals[tier]} approval(s) (filed as ${r.riskTier}, ${r.approvalsRequired})`;
  if (r.requestedTtlSeconds > settings.grantTtlMaxSeconds)
    return `the maximum grant TTL is now ${formatDuration(settings.grantTtlMaxSeconds)}, shorter than the ${formatDuration(r.requestedTtlSeconds)} asked for`;
  const call = { action: r.action, resource: r.resource, branch: r.branch ?? undefined };
  if (r.kind === "grant") {
    const checked = checkGrantCall(
      project,
      r.agent,
      { ...call, resourceGlob: r.resourceGlob ?? undefined },
      now,
    );
    if (!checked.ok) return checked.message;
    if (checked.decision.decision === "ALLOW")
      return `the policy now allows this call (${checked.decision.reason}); nothing to grant`;
    return undefined;
  }
  const checked = checkOneShotCall(project, r.agent, { ...call, params: r.callParams ?? {} }, now);
  return checked.ok ? undefined : checked.message;
}
