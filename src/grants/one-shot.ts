import { createHash } from "node:crypto";
import { and, desc, eq, gt, isNotNull, isNull, sql } from "drizzle-orm";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditEventInput, AuditLog } from "../audit/audit-log.js";
import { type AuditLine, canonicalJson } from "../audit/chain.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { singleUseGrants } from "../db/schema.js";

/** The exact call a one-shot approval is bound to. */
export interface BoundCall {
  action: string;
  resource: string;
  branch?: string | undefined;
  params?: Record<string, unknown> | undefined;
}

/**
 * The hash a one-shot approval is bound to: action, resource, branch and the canonical JSON of the
 * parameters (keys sorted), so the same call hashes the same however its keys were ordered, and
 * any other amount, currency or receiver hashes differently.
 */
export function callHash(call: BoundCall): string {
  return createHash("sha256")
    .update(
      canonicalJson({
        action: call.action,
        resource: call.resource,
        branch: call.branch ?? null,
        params: call.params ?? {},
      }),
    )
    .digest("hex");
}

export type Consumed =
  | {
      status: "used";
      id: string;
      approvedBy: string[];
      idempotencyKey: string | null;
      /** The decision's audit line, committed with the use. */
      line: AuditLine;
    }
  /** There was an approval for this call, and it has been used. */
  | { status: "spent"; id: string; usedAt: Date }
  | { status: "none" };

/**
 * Single-use grants: the approvals of one-shot requests. Using one and recording that it was used
 * commit together; `used_at IS NULL` in the UPDATE makes two racing calls use it at most once.
 */
export function createOneShots(deps: { db: Db; audit: Pick<AuditLog, "appendInTx">; clock: Clock }) {
  const { db, audit, clock } = deps;
  return {
    /**
     * Uses the single-use grant for exactly this call, if one is waiting. `decision` is the audit
     * line of the decision that uses it: written in the same transaction as `grant.used`, so an
     * approval is never spent without the ALLOW that spent it (nor the other way round).
     */
    async consume(
      identity: AgentIdentity,
      call: BoundCall,
      hash: string,
      decision: (used: { id: string; approvedBy: string[] }) => AuditEventInput,
    ): Promise<Consumed> {
      const now = clock.now();
      return db.transaction(async (tx) => {
        const [used] = await tx
          .update(singleUseGrants)
          .set({ usedAt: now })
          .where(
            and(
              eq(
                singleUseGrants.id,
                sql`(select ${singleUseGrants.id} from ${singleUseGrants} where ${and(
                  eq(singleUseGrants.project, identity.project),
                  eq(singleUseGrants.agent, identity.agent),
                  eq(singleUseGrants.callHash, hash),
                  isNull(singleUseGrants.usedAt),
                  isNull(singleUseGrants.revokedAt),
                  gt(singleUseGrants.expiresAt, now),
                )} order by ${singleUseGrants.createdAt} limit 1)`,
              ),
              isNull(singleUseGrants.usedAt),
            ),
          )
          .returning();
        if (used) {
          const [, line] = await audit.appendInTx(tx, [
            {
              type: "grant.used",
              agent: identity.agent,
              project: identity.project,
              action: call.action,
              resource: call.resource,
              reason: `single-use grant ${used.id} used for exactly the approved call`,
              at: now,
              details: { grant_id: used.id, call_sha256: hash, approved_by: used.approvedBy.join(", ") },
            },
            decision({ id: used.id, approvedBy: used.approvedBy }),
          ]);
          return {
            status: "used" as const,
            id: used.id,
            approvedBy: used.approvedBy,
            idempotencyKey: used.idempotencyKey,
            line: line!,
          };
        }
        const [spent] = await tx
          .select()
          .from(singleUseGrants)
          .where(
            and(
              eq(singleUseGrants.project, identity.project),
              eq(singleUseGrants.agent, identity.agent),
              eq(singleUseGrants.callHash, hash),
              isNotNull(singleUseGrants.usedAt),
            ),
          )
          .orderBy(desc(singleUseGrants.usedAt))
          .limit(1);
        if (spent?.usedAt) return { status: "spent" as const, id: spent.id, usedAt: spent.usedAt };
        return { status: "none" as const };
      });
    },

    /**
     * Gives a used single-use grant back when its call did not go out (a budget refused it, or
     * the provider never answered). The retry is sent with the same idempotency key, so even a
     * call the provider did receive cannot execute twice.
     */
    async release(identity: AgentIdentity, call: BoundCall, id: string, reason: string): Promise<void> {
      const now = clock.now();
      await db.transaction(async (tx) => {
        const [back] = await tx
          .update(singleUseGrants)
          .set({ usedAt: null })
          .where(and(eq(singleUseGrants.id, id), isNotNull(singleUseGrants.usedAt)))
          .returning({ id: singleUseGrants.id });
        if (!back) return;
        await audit.appendInTx(tx, [
          {
            type: "grant.released",
            agent: identity.agent,
            project: identity.project,
            action: call.action,
            resource: call.resource,
            reason,
            at: now,
            details: { grant_id: id },
          },
        ]);
      });
    },
  };
}

export type OneShots = ReturnType<typeof createOneShots>;
