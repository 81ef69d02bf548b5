import { createHash, randomBytes } from "node:crypto";
import { and, asc, eq, isNull } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db } from "../db/client.js";
import { agentTokens } from "../db/schema.js";
import { AppError } from "../errors.js";
import { newId } from "../ids.js";

/** Who a valid agent token speaks for. */
export interface AgentIdentity {
  tokenId: string;
  agent: string;
  project: string;
}

export interface AgentTokenInfo {
  tokenId: string;
  agent: string;
  project: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface TokenServiceDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  clock: Clock;
  /** How long a verified token is trusted without asking the database again. */
  cacheTtlMs?: number;
}

const TOKEN_PREFIX = "bt_";
const TOKEN_SHAPE = /^bt_[A-Za-z0-9_-]{43}$/;

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * Per-agent bearer tokens. A token is shown once, when it is made; only its sha256 is stored
 * (tokens carry 256 random bits, so a fast hash is enough). Verified tokens are cached briefly;
 * every instance drops its cache when any instance creates or revokes a token.
 */
export function createTokenService(deps: TokenServiceDeps) {
  const { db, audit, changes, clock } = deps;
  const ttl = deps.cacheTtlMs ?? 60_000;
  const cache = new Map<string, { identity: AgentIdentity | undefined; at: number }>();
  const NEGATIVE_TTL = 5_000;
  const CACHE_MAX = 100_000;
  // Bumped on every invalidation, so that a lookup that started before a revocation committed
  // cannot put its stale answer back into the cache after the cache was cleared.
  let generation = 0;
  const invalidate = () => {
    generation++;
    cache.clear();
  };
  changes.subscribe((c) => {
    if (c.kind === "tokens" || c.kind === "resync") invalidate();
  });

  async function lookup(hash: string): Promise<AgentIdentity | undefined> {
    const [row] = await db
      .select()
      .from(agentTokens)
      .where(and(eq(agentTokens.tokenHash, hash), isNull(agentTokens.revokedAt)));
    return row ? { tokenId: row.id, agent: row.agent, project: row.project } : undefined;
  }

  return {
    /** The identity behind a presented token, or undefined if it is unknown, malformed or revoked. */
    async authenticate(token: string): Promise<AgentIdentity | undefined> {
      if (!TOKEN_SHAPE.test(token)) return undefined;
      const now = clock.now().getTime();
      // Keyed by the token itself (held only in this process's memory, like the request that
      // carries it), so that a cache hit costs no hashing.
      const hit = cache.get(token);
      if (hit && now - hit.at < (hit.identity ? ttl : NEGATIVE_TTL)) return hit.identity;
      const gen = generation;
      const identity = await lookup(hashToken(token));
      if (gen === generation) {
        if (cache.size >= CACHE_MAX) cache.clear();
        cache.set(token, { identity, at: now });
      }
      return identity;
    },

    /** Makes a token for an agent of a project. The token is returned here and never again. */
    async create(
      agent: string,
      project: string,
      actor: string,
    ): Promise<{ token: string; info: AgentTokenInfo }> {
      const token = TOKEN_PREFIX + randomBytes(32).toString("base64url");
      const id = newId("tok");
      const now = clock.now();
      await db.transaction(async (tx) => {
        await tx
          .insert(agentTokens)
          .values({ id, agent, project, tokenHash: hashToken(token), createdAt: now });
        await audit.appendInTx(tx, [
          { type: "agent_token.created", agent, project, details: { token_id: id, actor } },
        ]);
        await changes.publish(tx, { kind: "tokens" });
      });
      return { token, info: { tokenId: id, agent, project, createdAt: now.toISOString(), revokedAt: null } };
    },

    async list(project?: string): Promise<AgentTokenInfo[]> {
      const rows = await db
        .select()
        .from(agentTokens)
        .where(project === undefined ? undefined : eq(agentTokens.project, project))
        .orderBy(asc(agentTokens.project), asc(agentTokens.agent), asc(agentTokens.createdAt));
      return rows.map((r) => ({
        tokenId: r.id,
        agent: r.agent,
        project: r.project,
        createdAt: r.createdAt.toISOString(),
        revokedAt: r.revokedAt?.toISOString() ?? null,
      }));
    },

    /**
     * Revokes the active tokens of an agent in a project (or one token by id). Effective on every
     * instance as soon as it commits. Revoking nothing is NOT_FOUND, so a typo is noticed.
     */
    async revoke(
      sel: { agent: string; project: string; tokenId?: string },
      actor: string,
    ): Promise<string[]> {
      const now = clock.now();
      const revoked = await db.transaction(async (tx) => {
        const conds = [
          eq(agentTokens.agent, sel.agent),
          eq(agentTokens.project, sel.project),
          isNull(agentTokens.revokedAt),
        ];
        if (sel.tokenId !== undefined) conds.push(eq(agentTokens.id, sel.tokenId));
        const rows = await tx
          .update(agentTokens)
          .set({ revokedAt: now })
          .where(and(...conds))
          .returning({ id: agentTokens.id });
        if (rows.length === 0) {
          throw new AppError(
            "NOT_FOUND",
            sel.tokenId
              ? `no active token ${sel.tokenId} for agent '${sel.agent}' in project '${sel.project}'`
              : `agent '${sel.agent}' has no active tokens in project '${sel.project}'`,
          );
        }
        const ids = rows.map((r) => r.id);
        await audit.appendInTx(tx, [
          {
            type: "agent_token.revoked",
            agent: sel.agent,
            project: sel.project,
            details: { token_ids: ids, actor },
          },
        ]);
        await changes.publish(tx, { kind: "tokens" });
        return ids;
      });
      // Other instances learn of it through NOTIFY; this one must not wait for its own.
      invalidate();
      return revoked;
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
