import { eq } from "drizzle-orm";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditEventInput } from "../audit/audit-log.js";
import type { Tx } from "../db/client.js";
import { accessRequests, grants, singleUseGrants } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { ButlerDeps } from "./context.js";
import { findRequest, lockRequest } from "./request-repo.js";
import type { RequestRow } from "./request-view.js";
import { announce, decidedMessage, notification } from "./transitions.js";

/**
 * The agent withdraws its own pending request. `unlessStillWanted` is asked under the request's row
 * lock, in the same transaction: when it answers true (another A2A task still waits on the
 * request, say), the request stays pending; two callers deciding at once are serialised.
 */
export async function cancel(
  deps: ButlerDeps,
  identity: AgentIdentity,
  id: string,
  opts: { unlessStillWanted?: (tx: Tx) => Promise<boolean> },
): Promise<RequestRow> {
  const now = deps.clock.now();
  const row = await deps.db.transaction(async (tx) => {
    const r = await lockRequest(tx, id);
    if (r.agent !== identity.agent || r.project !== identity.project)
      throw new AppError("NOT_FOUND", `no access request ${id}`);
    if (r.status === "canceled") return r;
    if (r.status !== "pending")
      throw new AppError("ALREADY_DECIDED", `request ${r.id} is ${decidedMessage(r)}`);
    if (await opts.unlessStillWanted?.(tx)) return r;
    const [c] = await tx
      .update(accessRequests)
      .set({ status: "canceled", decidedAt: now, decidedBy: identity.agent, decidedVia: "agent" })
      .where(eq(accessRequests.id, r.id))
      .returning();
    await deps.audit.appendInTx(tx, [
      {
        type: "access_request.canceled",
        agent: r.agent,
        project: r.project,
        action: r.action,
        resource: r.resource,
        details: { request_id: r.id },
      },
    ]);
    await announce(deps, tx, c!, notification(c!, "request_canceled"), "Canceled by the agent", now);
    return c!;
  });
  deps.onEnqueued?.();
  return row;
}

/** A grant already revoked cannot be revoked again: the answer says when and by whom. */
function alreadyRevoked(grantId: string, g: { revokedAt: Date | null; revokedBy: string | null }): AppError {
  return new AppError(
    "GRANT_ENDED",
    `grant ${grantId} was already revoked at ${g.revokedAt!.toISOString()} by ${g.revokedBy}`,
  );
}

/** Revokes a grant at once: a new policy revision without it, audited, the agent told. */
export async function revokeGrant(
  deps: ButlerDeps,
  grantId: string,
  actor: string,
  reason: string | undefined,
  /** `incident: false`: not a trust incident of the agent (a suspension, which is one act). */
  opts: { incident?: boolean } = {},
): Promise<{ grant_id: string; revision: number }> {
  const now = deps.clock.now();
  const [single] = await deps.db
    .select({ id: singleUseGrants.id })
    .from(singleUseGrants)
    .where(eq(singleUseGrants.id, grantId));
  // An unused one-shot approval withdrawn is the approver's change of mind, not an incident.
  if (single) return revokeOneShot(deps, grantId, actor, reason);
  const why = reason ?? `revoked by ${actor}`;
  const done = await deps.db.transaction(async (tx) => {
    const [pre] = await tx.select({ project: grants.project }).from(grants).where(eq(grants.id, grantId));
    if (!pre) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
    // The project's lock before the grant's row, in the same order as policy imports.
    await deps.policies.lockProject(tx, pre.project);
    const [g] = await tx.select().from(grants).where(eq(grants.id, grantId)).for("update");
    if (!g) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
    if (g.revokedAt) throw alreadyRevoked(grantId, g);
    await tx.update(grants).set({ revokedAt: now, revokedBy: actor }).where(eq(grants.id, grantId));
    const applied = await deps.policies.recompose(tx, g.project, `revoke:${grantId}`);
    const [line] = await deps.audit.appendInTx(tx, [
      revokedLine(g, why, {
        actor,
        revision: applied.revision,
        before_hash: applied.beforeHash,
        after_hash: applied.afterHash,
      }),
    ]);
    await tellRevoked(
      deps,
      tx,
      g.id,
      { grantId: g.id, reason: why, revision: applied.revision },
      actor,
      reason,
      "The grant",
      now,
    );
    const live = g.expiresAt.getTime() > now.getTime();
    return {
      grant_id: g.id,
      revision: applied.revision,
      project: g.project,
      agent: g.agent,
      line: line!,
      live,
    };
  });
  deps.onEnqueued?.();
  // A live grant revoked is an incident of its agent (told before the refresh, which may fail).
  if (done.live && opts.incident !== false)
    await deps.onRevoked?.(done.project, done.agent, done.line.event_id);
  await deps.policies.refreshProject(done.project);
  return { grant_id: done.grant_id, revision: done.revision };
}

/** Revokes an unused one-shot approval: the call it was for is denied again. */
async function revokeOneShot(
  deps: ButlerDeps,
  grantId: string,
  actor: string,
  reason: string | undefined,
): Promise<{ grant_id: string; revision: number }> {
  const now = deps.clock.now();
  const done = await deps.db.transaction(async (tx) => {
    const [g] = await tx.select().from(singleUseGrants).where(eq(singleUseGrants.id, grantId)).for("update");
    if (!g) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
    if (g.revokedAt) throw alreadyRevoked(grantId, g);
    if (g.usedAt)
      throw new AppError(
        "GRANT_ENDED",
        `one-shot grant ${grantId} was already used at ${g.usedAt.toISOString()}; there is nothing left to revoke`,
      );
    await tx
      .update(singleUseGrants)
      .set({ revokedAt: now, revokedBy: actor })
      .where(eq(singleUseGrants.id, grantId));
    const revision = deps.policies.index().projects.get(g.project)?.revision ?? 0;
    const why = reason ?? `revoked by ${actor}`;
    await deps.audit.appendInTx(tx, [
      revokedLine(g, why, { actor, one_shot: true, call_sha256: g.callHash }),
    ]);
    await tellRevoked(
      deps,
      tx,
      g.id,
      { grantId: g.id, reason: why, revision },
      actor,
      reason,
      "The one-shot approval",
      now,
    );
    return { grant_id: g.id, revision };
  });
  deps.onEnqueued?.();
  return done;
}

/** The `grant.revoked` audit line of a grant (a policy grant or a single-use one). */
function revokedLine(
  g: { id: string; agent: string; project: string; action: string; resource: string },
  why: string,
  details: Record<string, unknown>,
): AuditEventInput {
  return {
    type: "grant.revoked",
    agent: g.agent,
    project: g.project,
    action: g.action,
    resource: g.resource,
    reason: why,
    details: { grant_id: g.id, ...details },
  };
}

/** Tells the agent and the cards of the grant's request that it was revoked. */
async function tellRevoked(
  deps: ButlerDeps,
  tx: Tx,
  requestId: string,
  told: { grantId: string; reason: string; revision: number },
  actor: string,
  reason: string | undefined,
  what: string,
  now: Date,
): Promise<void> {
  const r = await findRequest(tx, requestId);
  if (!r) return;
  const note = `${what} was revoked by ${actor}${reason ? `: ${reason}` : ""}`;
  await announce(deps, tx, r, notification(r, "grant_revoked", told), note, now);
}
