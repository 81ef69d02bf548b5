import { and, eq, gt, isNull } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import { resolvePresser } from "../butler/approver-directory.js";
import type { ReviewInput } from "../butler/channel-port.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { accessRequests, grants, securityAlerts, singleUseGrants } from "../db/schema.js";
import { AppError, type ErrorCode } from "../errors.js";
import type { Logger } from "../logger.js";
import type { PolicyIndex } from "../policy/index.js";
import type { Trust } from "./trust.js";

/** What a person can do from a security alert's buttons. */
export type AlertAction = "acknowledge" | "suspend" | "restore_trust";

export interface AlertActionInput {
  alertId: string;
  action: AlertAction;
  actor: ReviewInput["actor"];
}

/** What the presser is told; for an action taken, who took it (an approver id), for everyone to see. */
export type AlertActionOutcome =
  | { ok: true; message: string; by: string }
  | { ok: false; code: ErrorCode; message: string };

/** An alert id as buttons carry it. */
export const ALERT_ID = /^al_[a-z0-9]{16}$/;

const COLUMNS = {
  acknowledge: { by: "acknowledgedBy", at: "acknowledgedAt", done: "acknowledged" },
  suspend: { by: "suspendedBy", at: "suspendedAt", done: "suspended the agent's grants" },
  restore_trust: { by: "trustRaisedBy", at: "trustRaisedAt", done: "restored the agent's trust score" },
} as const;

/**
 * The buttons of a security alert, pressed in Slack or Telegram by an approver of the alert's
 * project (resolved like a review: the project's own entry must name the account): acknowledge
 * it, suspend the agent (revoke every grant and unused one-shot approval Butler gave it), or
 * restore its trust score to the project's initial. Each action is taken once per alert, the
 * first press wins, and each is audited.
 */
type AlertActionDeps = Parameters<typeof createAlertActions>[0];

export function createAlertActions(deps: {
  db: Db;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  policies: { index(): PolicyIndex };
  trust: Pick<Trust, "restore">;
  log: Logger;
  butler: {
    revokeGrant: (
      grantId: string,
      actor: string,
      reason?: string,
      opts?: { incident?: boolean },
    ) => Promise<unknown>;
  };
}) {
  const { db, audit, clock, policies } = deps;

  return {
    async act(input: AlertActionInput): Promise<AlertActionOutcome> {
      const [alert] = await db.select().from(securityAlerts).where(eq(securityAlerts.id, input.alertId));
      if (!alert) return { ok: false, code: "NOT_FOUND", message: `no security alert ${input.alertId}` };
      const presser = await resolvePresser(db, policies.index(), alert.project, {
        actor: input.actor,
        alertId: alert.id,
      });
      if (presser.kind === "refused") {
        await audit.append({
          type: "security.action_refused",
          project: alert.project,
          agent: alert.agent,
          reason: presser.reason,
          details: { ...presser.details, alert_action: input.action },
        });
        return { ok: false, code: "FORBIDDEN", message: presser.message };
      }
      const by = presser.id;
      // An agent never acts on an alert about itself (an approver id may name an agent too).
      if (by === alert.agent)
        return { ok: false, code: "FORBIDDEN", message: `${by} cannot act on an alert about itself` };
      // A break-glass is reviewed by a second person: the one who broke the glass may only
      // suspend (which ends it), not acknowledge it or restore the agent's trust.
      if (alert.kind === "break_glass" && input.action !== "suspend" && alert.requestId) {
        const [opened] = await db
          .select({ by: accessRequests.breakGlassBy })
          .from(accessRequests)
          .where(eq(accessRequests.id, alert.requestId));
        if (opened?.by === by)
          return {
            ok: false,
            code: "FORBIDDEN",
            message: `${by} broke the glass: a second person reviews it`,
          };
      }
      const initial = policies.index().projects.get(alert.project)?.document.trust?.initial;
      if (input.action === "restore_trust" && initial === undefined)
        return { ok: false, code: "INVALID_INPUT", message: `${alert.project} has no trust scores` };
      const col = COLUMNS[input.action];
      // The first press takes the action; later ones are told who did.
      const [claimed] = await db
        .update(securityAlerts)
        .set({ [col.by]: by, [col.at]: clock.now() })
        .where(and(eq(securityAlerts.id, alert.id), isNull(securityAlerts[col.by])))
        .returning({ id: securityAlerts.id });
      if (!claimed) {
        const [now] = await db.select().from(securityAlerts).where(eq(securityAlerts.id, alert.id));
        return { ok: false, code: "CONFLICT", message: `${now?.[col.by] ?? "someone"} already ${col.done}` };
      }
      try {
        return await take(alert, input.action, by, initial);
      } catch (e) {
        // Not taken after all: the next press may try again.
        await db
          .update(securityAlerts)
          .set({ [col.by]: null, [col.at]: null })
          .where(eq(securityAlerts.id, alert.id))
          .catch(() => undefined);
        deps.log.error({ err: e, alert: alert.id, action: input.action }, "a security alert's action failed");
        return {
          ok: false,
          code: "UNAVAILABLE",
          message: "that could not be completed just now; press again to finish it",
        };
      }
    },
  };

  /** Carries out a claimed action and audits it. */
  async function take(
    alert: typeof securityAlerts.$inferSelect,
    action: AlertAction,
    by: string,
    initial: number | undefined,
  ): Promise<AlertActionOutcome> {
    const subject = { project: alert.project, agent: alert.agent };
    if (action === "acknowledge" && alert.kind === "break_glass" && alert.requestId) {
      await db
        .update(accessRequests)
        .set({ breakGlassReviewedBy: by, breakGlassReviewedAt: clock.now() })
        .where(eq(accessRequests.id, alert.requestId));
      await audit.append({
        type: "break_glass.reviewed",
        ...subject,
        reason: `${by} reviewed the break-glass of ${alert.agent}: ${alert.title}`,
        details: { alert_id: alert.id, request_id: alert.requestId, by },
      });
      return { ok: true, by, message: `reviewed; the break-glass of ${alert.agent} is acknowledged.` };
    }
    if (action === "acknowledge") {
      await audit.append({
        type: "security.acknowledged",
        ...subject,
        reason: `${by} acknowledged: ${alert.title}`,
        details: { alert_id: alert.id, by },
      });
      return { ok: true, by, message: `acknowledged; ${alert.agent} is unchanged.` };
    }
    if (action === "suspend") {
      const revoked = await suspendAgent(deps, alert.project, alert.agent, by, alert.id);
      await audit.append({
        type: "security.agent_suspended",
        ...subject,
        reason: `${by} suspended ${alert.agent}'s grants (${revoked.length}) from alert ${alert.id}`,
        details: { alert_id: alert.id, by, revoked_grants: revoked },
      });
      return {
        ok: true,
        by,
        message: `suspended ${alert.agent}: ${revoked.length} grant(s) revoked; its policy file's own grants are unchanged.`,
      };
    }
    const r = await deps.trust.restore(alert.project, alert.agent, initial!, by, alert.id);
    return {
      ok: true,
      by,
      message:
        r.before === r.after
          ? `${alert.agent}'s trust score is ${r.after} already (the project's initial is ${initial}).`
          : `restored ${alert.agent}'s trust score from ${r.before} to ${r.after}.`,
    };
  }
}

export type AlertActions = ReturnType<typeof createAlertActions>;

/** Revokes every grant and unused one-shot approval of the agent in force now; their ids. */
async function suspendAgent(
  deps: { db: Db; clock: Clock; butler: AlertActionDeps["butler"] },
  project: string,
  agent: string,
  by: string,
  alertId: string,
): Promise<string[]> {
  const { db, clock } = deps;
  const now = clock.now();
  const live = await db
    .select({ id: grants.id })
    .from(grants)
    .where(
      and(
        eq(grants.project, project),
        eq(grants.agent, agent),
        isNull(grants.revokedAt),
        gt(grants.expiresAt, now),
      ),
    );
  const once = await db
    .select({ id: singleUseGrants.id })
    .from(singleUseGrants)
    .where(
      and(
        eq(singleUseGrants.project, project),
        eq(singleUseGrants.agent, agent),
        isNull(singleUseGrants.usedAt),
        isNull(singleUseGrants.revokedAt),
        gt(singleUseGrants.expiresAt, now),
      ),
    );
  const revoked: string[] = [];
  for (const { id } of [...live, ...once]) {
    try {
      // One act, not an incident per grant: the alert's own cause already cost the agent trust.
      await deps.butler.revokeGrant(id, by, `suspended by ${by} from security alert ${alertId}`, {
        incident: false,
      });
      revoked.push(id);
    } catch (e) {
      // Revoked or used meanwhile: nothing left to take.
      if (!(e instanceof AppError)) throw e;
    }
  }
  return revoked;
}
