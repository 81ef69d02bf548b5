import { createHash, randomBytes } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { approverTokens } from "../db/schema.js";
import { newId } from "../ids.js";

const SHAPE = /^bap_[A-Za-z0-9_-]{43}$/;
/** Auditors' tokens: read-only, never accepted where a decision is made. */
const AUDITOR_SHAPE = /^bau_[A-Za-z0-9_-]{43}$/;
export type PersonRole = "approver" | "auditor";
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
  /** The person behind an approver's or auditor's token, with their role, or undefined. */
  async function person(
    token: string,
  ): Promise<{ id: string; role: PersonRole; tokenId: string } | undefined> {
    if (!SHAPE.test(token) && !AUDITOR_SHAPE.test(token)) return undefined;
    const [row] = await db
      .select()
      .from(approverTokens)
      .where(and(eq(approverTokens.tokenHash, hash(token)), isNull(approverTokens.revokedAt)));
    return row ? { id: row.approver, role: row.role, tokenId: row.id } : undefined;
  }

  return {
    person,
    async create(
      approver: string,
      actor: string,
      role: PersonRole = "approver",
    ): Promise<{ token: string; tokenId: string }> {
      const token = `${role === "auditor" ? "bau" : "bap"}_${randomBytes(32).toString("base64url")}`;
      const tokenId = newId("apt");
      await db.transaction(async (tx) => {
        await tx
          .insert(approverTokens)
          .values({ id: tokenId, approver, role, tokenHash: hash(token), createdAt: clock.now() });
        await audit.appendInTx(tx, [
          {
            type: role === "auditor" ? "auditor_token.created" : "approver_token.created",
            details: { [role]: approver, token_id: tokenId, actor },
          },
        ]);
      });
      return { token, tokenId };
    },
    /** The approver id behind an approver's token (never an auditor's), or undefined. */
    async authenticate(token: string): Promise<{ approver: string; tokenId: string } | undefined> {
      const p = await person(token);
      return p?.role === "approver" ? { approver: p.id, tokenId: p.tokenId } : undefined;
    },
  };
}

export type ApproverTokens = ReturnType<typeof createApproverTokens>;
