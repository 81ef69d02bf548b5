import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { AuditEventInput } from "../audit/audit-log.js";
import { accessRequests, securityAlerts } from "../db/schema.js";
import { AppError } from "../errors.js";
import { sha256 } from "../hash.js";
import { newId } from "../ids.js";
import { grantProblem } from "../policy/effective.js";
import { type CompiledProject, formatDuration, parseDuration } from "../policy/index.js";
import { classifyRisk } from "../policy/risk.js";
import { scopeRequest } from "../policy/scope.js";
import { approverOf } from "./approver-directory.js";
import type { ButlerDeps } from "./context.js";
import { checkGrantCall } from "./request-rules.js";
import { applyGrant } from "./review.js";
import { proposalIn } from "./submit.js";

/**
 * Break-glass: a person the project names (`settings.break_glass.people`, never an agent) opens
 * emergency access for an agent at once, without waiting for approvers: a short grant (at most
 * `max_ttl`), live on every instance with the new revision, marked in the audit (and in every
 * ALLOW it gives: its approver reads `break-glass:<person>`), announced as a security alert to the
 * security rooms and the approvers' rooms, and open for review until a second person acknowledges
 * that alert.
 */

export interface BreakGlassInput {
  project: string;
  agent: string;
  action: string;
  resource?: string | undefined;
  branch?: string | undefined;
  ttl?: string | number | undefined;
  reason: string;
}

export interface BreakGlassResult {
  request_id: string;
  grant_id: string;
  revision: number;
  expires_at: string;
  alert_id: string | null;
}

/** The approver the grant names: every ALLOW line it gives says who broke the glass. */
export const BREAK_GLASS_PREFIX = "break-glass:";

/** Who may open it, for which call and how long: refused with the reason, before anything is written. */
function checkBreakGlass(
  deps: ButlerDeps,
  person: string,
  input: BreakGlassInput,
  now: Date,
  project: CompiledProject | undefined,
) {
  const index = deps.policies.index();
  const allowed = project?.document.settings.breakGlass;
  if (!project || !approverOf(index, project, person) || !allowed?.people.includes(person))
    throw new AppError(
      "FORBIDDEN",
      `${person} may not break the glass in ${input.project}: only the approvers its settings.break_glass.people names`,
    );
  if (person === input.agent) throw new AppError("FORBIDDEN", "an agent never opens access for itself");
  if (!project.agentRoles.has(input.agent))
    throw new AppError("INVALID_INPUT", `agent: ${input.agent} is not an agent of ${input.project}`);
  if (input.reason.trim() === "") throw new AppError("INVALID_INPUT", "reason: say why, for the review");
  // Never longer than any grant of the project may be.
  const limit = Math.min(allowed.maxTtlSeconds, project.document.settings.grantTtlMaxSeconds);
  const ttl = parseDuration(input.ttl ?? limit);
  if (!ttl.ok) throw new AppError("INVALID_INPUT", `ttl: ${ttl.error}`);
  if (ttl.value > limit)
    throw new AppError(
      "INVALID_INPUT",
      `ttl: ${formatDuration(ttl.value)} is longer than the break-glass limit of ${input.project} (${formatDuration(limit)})`,
    );
  const scoped = scopeRequest(
    { action: input.action, resource: input.resource, branch: input.branch },
    undefined,
  );
  if (!scoped.ok) throw new AppError("INVALID_INPUT", scoped.error);
  const call = scoped.value;
  // Emergency access is still never a bypass of never_grant or of a grant's parameter limits.
  const checked = checkGrantCall(project, input.agent, call, now);
  if (!checked.ok) throw new AppError(checked.code, checked.message);
  if (checked.decision.decision === "ALLOW")
    throw new AppError("CONFLICT", `${input.agent} may already do this: ${checked.decision.reason}`);
  // The grant must load as policy on every instance (a resource too long for a glob would not).
  const problem = grantProblem(input.project, {
    id: "req_0000000000000000",
    agent: input.agent,
    ...call,
    expiresAt: now.getTime() + ttl.value * 1000,
    note: "break-glass",
    approvedBy: [`${BREAK_GLASS_PREFIX}${person}`],
  });
  if (problem)
    throw new AppError(
      "INVALID_INPUT",
      `this call cannot be written as a grant: ${problem.path}: ${problem.message}`,
    );
  return { project, call, ttlSeconds: ttl.value };
}

export async function breakGlass(
  deps: ButlerDeps,
  person: string,
  input: BreakGlassInput,
): Promise<BreakGlassResult> {
  await deps.policies.refreshAll();
  const now = deps.clock.now();
  const { project, call, ttlSeconds } = checkBreakGlass(
    deps,
    person,
    input,
    now,
    deps.policies.index().projects.get(input.project),
  );
  const id = newId("req");
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  const by = `${BREAK_GLASS_PREFIX}${person}`;
  const result = await deps.db.transaction(async (tx) => {
    await deps.policies.lockProject(tx, input.project);
    // Checked again against the revision under the lock: an import or another break-glass may
    // have changed it since.
    checkBreakGlass(deps, person, input, now, await deps.policies.compiledIn(tx, input.project));
    const proposed = {
      id,
      agent: input.agent,
      ...call,
      expiresAt: expiresAt.getTime(),
      note: `BREAK-GLASS ${id} by ${person} for ${input.agent}`,
      approvedBy: [by],
    };
    const { latest, diff } = await proposalIn(deps, tx, input.project, proposed, now);
    const tier = classifyRisk(call.action, project.document.settings);
    const [row] = await tx
      .insert(accessRequests)
      .values({
        id,
        project: input.project,
        agent: input.agent,
        tokenId: "break-glass",
        status: "approved",
        action: call.action,
        resource: call.resource,
        branch: call.branch ?? null,
        reason: input.reason,
        riskTier: tier,
        approvalsRequired: 0,
        requestedTtlSeconds: ttlSeconds,
        proposalDiff: diff,
        proposalBaseRevision: latest.revision,
        proposalHash: sha256(diff),
        // Never one pending request's twin: break-glass requests are decided when made.
        dedupeKey: `break-glass:${randomUUID()}`,
        createdAt: now,
        expiresAt: now,
        decidedAt: now,
        decidedBy: person,
        decidedVia: "break-glass",
        decisionReason: input.reason,
        grantedTtlSeconds: ttlSeconds,
        breakGlassBy: person,
      })
      .returning();
    const opened: AuditEventInput = {
      type: "break_glass.opened",
      agent: input.agent,
      project: input.project,
      action: call.action,
      resource: call.resource,
      reason: input.reason,
      details: {
        request_id: id,
        by: person,
        branch: call.branch,
        ttl: formatDuration(ttlSeconds),
        expires: expiresAt.toISOString(),
        reason_sha256: sha256(input.reason),
      },
    };
    const applied = await applyGrant(deps, tx, row!, { approvedBy: [by], expiresAt }, opened, now, {
      cause: `break-glass:${id}`,
      reason: `policy reloaded for ${input.project} (1 break-glass grant added by ${person})`,
      details: { break_glass: true },
    });
    const alert = await deps.alerts?.raiseInTx(tx, {
      kind: "break_glass",
      project: input.project,
      agent: input.agent,
      title: `BREAK-GLASS: ${person} opened ${call.action} on ${call.resource || "(no resource)"} for ${input.agent} until ${expiresAt.toISOString()}`,
      facts: [
        `Opened by ${person}, without approvers; needs a review by a second person (Acknowledge)`,
        `Reason (written by ${person}): ${input.reason}`,
        `Expires ${expiresAt.toISOString()} (${formatDuration(ttlSeconds)})`,
        `Request ${id}`,
      ],
      eventIds: applied.lines[0] ? [applied.lines[0].event_id] : [],
      requestId: id,
    });
    return { revision: applied.revision, alertId: alert?.id ?? null };
  });
  deps.onEnqueued?.();
  await deps.policies.refreshProject(input.project);
  deps.log.warn({ requestId: id, person, agent: input.agent, project: input.project }, "break-glass opened");
  return {
    request_id: id,
    grant_id: id,
    revision: result.revision,
    expires_at: expiresAt.toISOString(),
    alert_id: result.alertId,
  };
}

/**
 * The review of a break-glass: a second person (an approver of the project, not the one who broke
 * the glass) acknowledges its alert, wherever they see it (the chat buttons, or the API).
 */
export async function reviewBreakGlass(
  deps: ButlerDeps,
  approver: string,
  id: string,
): Promise<{ request_id: string; reviewed_by: string; message: string }> {
  const [alert] = await deps.db
    .select({ id: securityAlerts.id, project: securityAlerts.project })
    .from(securityAlerts)
    .where(and(eq(securityAlerts.requestId, id), eq(securityAlerts.kind, "break_glass")));
  const index = deps.policies.index();
  const project = alert && index.projects.get(alert.project);
  // Only an approver of the project reviews it (and not the person who opened it: see alert-actions).
  if (!alert || !project || !approverOf(index, project, approver) || !deps.alertAction)
    throw new AppError("NOT_FOUND", `no break-glass ${id} in your projects`);
  const outcome = await deps.alertAction({
    alertId: alert.id,
    action: "acknowledge",
    actor: { channel: "api", userId: approver },
  });
  if (!outcome.ok) throw new AppError(outcome.code, outcome.message);
  return { request_id: id, reviewed_by: outcome.by, message: outcome.message };
}
