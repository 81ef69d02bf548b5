import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import { AppError } from "../errors.js";
import type { AuthorizeResult } from "../gateway/gateway-service.js";
import type { ProviderAnswer } from "./call-types.js";
import type { Operation, ProviderSpec } from "./spec.js";

/** What a DENY says about the call it refuses. */
export interface Denial {
  action: string;
  resource: string;
  reason: string;
  /** The stable code (no_action_grant, budget_exceeded, approval_required, ...). */
  code: string;
  /** The audit line of the decision or refusal. */
  eventId: string;
  /** How to ask for exactly this call, when a person could allow it. */
  requestAccess?: AuthorizeResult["request_access"] | undefined;
  /** For approval_required: the one-shot request filed for the call (or why none was). */
  approvalRequired?: Record<string, unknown> | undefined;
  /** The HTTP status (403 unless a rate limit refused the call: 429). */
  status?: 403 | 429 | undefined;
}

/**
 * The seed's DENY line, as the agent sees it (403). The proxy answers it in place of the
 * provider, so it is its own wire format rather than an AppError.
 */
export function denialAnswer(now: Date, identity: AgentIdentity, d: Denial): ProviderAnswer {
  const approval = d.approvalRequired;
  const body = {
    ts: now.toISOString(),
    agent: identity.agent,
    project: identity.project,
    action: d.action,
    resource: d.resource,
    decision: "DENY",
    reason: d.reason,
    http_status: d.status ?? 403,
    event_id: d.eventId,
    code: d.code,
    ...(d.requestAccess ? { request_access: d.requestAccess } : {}),
    ...(approval ? { approval_required: approval } : {}),
    // Provider SDKs (stripe-node and others) raise an error only for a body with `error`: without
    // it, an unmodified SDK would take the DENY for the provider's answer.
    error: {
      type: "butler_denied",
      code: d.code,
      message: d.reason,
      event_id: d.eventId,
      ...(approval ? { request_id: (approval as { request_id?: string }).request_id } : {}),
    },
  };
  return {
    status: d.status ?? 403,
    contentType: "application/json",
    body: Buffer.from(JSON.stringify(body)),
    eventId: d.eventId,
  };
}

/** A refusal by a step after the policy decision (or of an unknown path), before its audit line. */
export interface Refusal {
  type: "budget.exceeded" | "gateway.denied";
  action: string;
  resource: string;
  reason: string;
  details: Record<string, unknown>;
}

export interface DenialDeps {
  audit: Pick<AuditLog, "append">;
  clock: Clock;
}

/** A refusal: audited, then the DENY line. */
export async function refuse(deps: DenialDeps, identity: AgentIdentity, r: Refusal): Promise<ProviderAnswer> {
  const line = await deps.audit.append({
    type: r.type,
    agent: identity.agent,
    project: identity.project,
    action: r.action,
    resource: r.resource,
    decision: "DENY",
    reason: r.reason,
    httpStatus: 403,
    details: r.details,
  });
  return denialAnswer(deps.clock.now(), identity, {
    action: r.action,
    resource: r.resource,
    reason: r.reason,
    eventId: line.event_id,
    code: r.type === "budget.exceeded" ? "budget_exceeded" : String(r.details.deny_code ?? "denied"),
  });
}

/**
 * A path parameter that would change the path: refused before anything is decided, and audited
 * as a denial (an agent trying to step out of the operation's path is worth a line). The line
 * names the operation's templates, never the agent's value.
 */
export async function refusePath(
  deps: DenialDeps,
  identity: AgentIdentity,
  at: { spec: ProviderSpec; op: Operation; via: string | undefined },
  problem: { param: string; problem: string },
): Promise<never> {
  const { spec, op, via } = at;
  const line = await deps.audit.append({
    type: "gateway.denied",
    agent: identity.agent,
    project: identity.project,
    action: op.action,
    resource: op.resource,
    decision: "DENY",
    reason: problem.problem,
    httpStatus: 400,
    details: {
      deny_code: "invalid_path_param",
      provider: spec.name,
      operation: op.name,
      param: problem.param,
      token_id: identity.tokenId,
      ...(via ? { via } : {}),
    },
  });
  throw new AppError("INVALID_INPUT", `${op.name}: ${problem.problem}`, { event_id: line.event_id });
}
