import { createHash, randomBytes } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { approverTokens } from "../db/schema.js";
import { newId } from "../ids.js";

const SHAPE = /^bap_[A-Za-z0-9_-]{43}$/;
const hash = (t: string) => createHash("sha256").update(t).digest("hex");

/** Whether a bearer token has the shape of an approver token (as opposed to an agent's). */
export function looksLikeApproverToken(token: string): boolean {
  return SHAPE.test(token);
}

/**
 * Bearer tokens of approvers: people who decide access requests. A token says who the person is;
 * whether they may decide a given request is checked against that project's approvers every time.
 */
export function createApproverTokens(deps: { db: Db; audit: Pick<AuditLog, "appendInTx">; clock: Clock }) {
  const { db, audit, clock } = deps;
  return {
    async create(approver: string, actor: string): Promise<{ token: string; tokenId: string }> {
      const token = `bap_${randomBytes(32).toString("base64url")}`;
      const tokenId = newId("apt");
      await db.transaction(async (tx) => {
        await tx
          .insert(approverTokens)
          .values({ id: tokenId, approver, tokenHash: hash(token), createdAt: clock.now() });
        await audit.appendInTx(tx, [
          { type: "approver_token.created", details: { approver, token_id: tokenId, actor } },
        ]);
      });
      return { token, tokenId };
    },
    /** The approver id behind a token, or undefined. */
    async authenticate(token: string): Promise<{ approver: string; tokenId: string } | undefined> {
      if (!SHAPE.test(token)) return undefined;
      const [row] = await db
        .select()
        .from(approverTokens)
        .where(and(eq(approverTokens.tokenHash, hash(token)), isNull(approverTokens.revokedAt)));
      return row ? { approver: row.approver, tokenId: row.id } : undefined;
    },
  };
}

export type ApproverTokens = ReturnType<typeof createApproverTokens>;
