import type { AccessRequestView } from "../butler/butler-service.js";
import type { A2A_TASK_STATES } from "../db/schema.js";

export type TaskStateName = (typeof A2A_TASK_STATES)[number];

/** `used`: a one-shot approval whose one call was made. */
import { type GrantState, grantState } from "../butler/request-view.js";

export type { GrantState };

/**
 * What the agent's grant looks like, as the task's artifact carries it. Keys are snake_case, as in
 * every JSON object the Butler defines (the API, the audit log); the A2A objects around it keep
 * the protocol's own field names.
 */
export interface GrantArtifact {
  grant_id: string;
  request_id: string | null;
  action: string;
  resource: string;
  branch: string | null;
  /** The resource glob the grant names instead of `resource` exactly, when one was asked for. */
  resource_pattern: string | null;
  expires_at: string | null;
  revision: number | null;
  state: GrantState;
  revoked_at: string | null;
  approved_by: string | null;
  /** Why the grant was revoked, in the revoker's words. */
  reason: string | null;
}

/** Where a task should be, given its access request as it is now. */
export interface TaskOutcome {
  state: TaskStateName;
  /** The status message: what is awaited, or what happened. */
  text: string;
  grant?: GrantArtifact;
}

export const TERMINAL: ReadonlySet<TaskStateName> = new Set(["completed", "rejected", "canceled", "failed"]);

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * The task state that tells the truth about an access request (pure). A pending request is
 * INPUT_REQUIRED, naming what it waits for; approval completes the task with the grant as its
 * artifact; denial rejects it with the approver's reason; cancellation cancels it; a request
 * nobody decided in time fails it. A grant revoked or expired later changes the artifact.
 */
export function outcomeOf(
  r: AccessRequestView,
  now: Date,
  known: { revision?: number | null | undefined; revokeReason?: string | null | undefined } = {},
): TaskOutcome {
  switch (r.status) {
    case "pending": {
      const missing = Math.max(1, r.approvals_required - r.approvals.length);
      const so = r.approvals.length > 0 ? ` (${r.approvals.length} of ${r.approvals_required} so far)` : "";
      return {
        state: "input_required",
        text: `waiting for ${plural(missing, "approval")} from ${r.project} approvers${so}; access request ${r.id} expires ${r.expires_at} if nobody decides${r.blast_radius ? `. What the grant would allow: ${r.blast_radius.facts.join("; ")}` : ""}`,
      };
    }
    case "approved": {
      const g = r.grant;
      const by =
        r.approvals.length > 0 ? r.approvals.map((a) => a.approver).join(", ") : (r.decision?.by ?? null);
      const via = r.decision?.via ? ` via ${r.decision.via}` : "";
      const date = (s: string | null) => (s === null ? null : new Date(s));
      const state: GrantState = !g
        ? "revoked"
        : grantState(
            { revokedAt: date(g.revoked_at), usedAt: date(g.used_at), expiresAt: new Date(g.expires_at) },
            now,
          );
      const grant: GrantArtifact = {
        grant_id: g?.id ?? r.id,
        request_id: r.id,
        action: r.action,
        resource: r.resource,
        branch: r.branch,
        resource_pattern: r.resource_pattern,
        expires_at: g?.expires_at ?? null,
        revision: known.revision ?? null,
        state,
        revoked_at: g?.revoked_at ?? null,
        approved_by: by,
        reason: state === "revoked" ? (known.revokeReason ?? null) : null,
      };
      const text =
        state === "active"
          ? r.kind === "one_shot"
            ? `approved by ${by ?? "an approver"}${via}: make exactly the same call (same parameters) once, before ${g?.expires_at}`
            : `granted by ${by ?? "an approver"}${via} until ${g?.expires_at}; retry the call`
          : state === "used"
            ? `the one-shot approval was used at ${g?.used_at}; the same call again needs a new approval`
            : state === "revoked"
              ? `the grant was revoked at ${g?.revoked_at ?? "an unknown time"}${known.revokeReason ? `: ${known.revokeReason}` : ""}; calls are denied again`
              : `the grant expired at ${g?.expires_at}; calls are denied again`;
      return { state: "completed", text, grant };
    }
    case "denied": {
      const why = r.decision?.reason ? `: ${r.decision.reason}` : "";
      const via = r.decision?.via ? ` via ${r.decision.via}` : "";
      return { state: "rejected", text: `denied by ${r.decision?.by ?? "an approver"}${via}${why}` };
    }
    case "canceled":
      return { state: "canceled", text: `access request ${r.id} was canceled by the agent` };
    case "expired":
      return {
        state: "failed",
        text: `nobody decided access request ${r.id} before it expired at ${r.expires_at}`,
      };
    case "superseded":
      // Nothing was granted: the agent asks again (under the policy now in force).
      return {
        state: "failed",
        text: `access request ${r.id} was superseded, nothing was granted: ${r.decision?.reason ?? "the policy changed since it was filed"}; ask again`,
      };
  }
}

/**
 * Why a task call cannot be done, in the protocol's terms: an unknown task (or another agent's),
 * params it cannot take, an operation the task's state does not allow, a task that cannot be
 * canceled. The SDK mapping turns each kind into the A2A error of the same name.
 */
export type TaskFaultKind = "not_found" | "malformed" | "unsupported" | "not_cancelable";

/** Thrown by the task service (so that a transaction rolls back); answered as an A2A error. */
export class TaskFault extends Error {
  override readonly name = "TaskFault";
  constructor(
    readonly kind: TaskFaultKind,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What a task should be moved to, given where it is and where its request says it should be
 * (pure); undefined when it stays as it is. A grant once revoked, expired or used never comes back
 * to life on the task, and a task that ended stays ended: only its grant's fate is still news.
 */
export function nextOutcome(
  task: { state: TaskStateName; grantState: string | null; text: string | undefined },
  outcome: TaskOutcome,
): TaskOutcome | undefined {
  const grant =
    outcome.grant && task.grantState && task.grantState !== "active"
      ? { ...outcome.grant, state: task.grantState as GrantState }
      : outcome.grant;
  const grantState = grant?.state ?? null;
  if (TERMINAL.has(task.state) && (outcome.state !== task.state || grantState === task.grantState))
    return undefined;
  if (outcome.state === task.state && grantState === task.grantState && outcome.text === task.text)
    return undefined;
  return grant ? { ...outcome, grant } : outcome;
}
