import { and, count, eq, gt, isNull, lt, or } from "drizzle-orm";
import type { Queryable } from "../db/client.js";
import { mcpSessions } from "../db/schema.js";

/**
 * MCP sessions as rows, so that any instance can serve any session: the hash of the session id
 * (the id itself is only with the client), the token that opened it, and when it ended. Every
 * query takes the connection or transaction it runs in.
 */

type SessionRow = typeof mcpSessions.$inferSelect;

export async function insertMcpSession(q: Queryable, row: typeof mcpSessions.$inferInsert): Promise<void> {
  await q.insert(mcpSessions).values(row);
}

/** The session with this id hash if it is neither ended nor expired at `now`. */
export async function liveMcpSession(
  q: Queryable,
  idHash: string,
  now: Date,
): Promise<SessionRow | undefined> {
  const [row] = await q
    .select()
    .from(mcpSessions)
    .where(and(eq(mcpSessions.idHash, idHash), isNull(mcpSessions.endedAt), gt(mcpSessions.expiresAt, now)));
  return row;
}

/** How many sessions `tokenId` opened that are neither ended nor expired at `now`. */
export async function liveMcpSessionsOf(q: Queryable, tokenId: string, now: Date): Promise<number> {
  const [row] = await q
    .select({ n: count() })
    .from(mcpSessions)
    .where(
      and(eq(mcpSessions.tokenId, tokenId), isNull(mcpSessions.endedAt), gt(mcpSessions.expiresAt, now)),
    );
  return row?.n ?? 0;
}

/**
 * Moves the session's expiry to `until` if it is live and expires before `renewBefore`: a session
 * in use does not expire, at the cost of one write per half-life.
 */
export async function renewMcpSession(
  q: Queryable,
  idHash: string,
  now: Date,
  renewBefore: Date,
  until: Date,
): Promise<boolean> {
  const renewed = await q
    .update(mcpSessions)
    .set({ expiresAt: until })
    .where(
      and(
        eq(mcpSessions.idHash, idHash),
        isNull(mcpSessions.endedAt),
        gt(mcpSessions.expiresAt, now),
        lt(mcpSessions.expiresAt, renewBefore),
      ),
    )
    .returning({ id: mcpSessions.idHash });
  return renewed.length > 0;
}

/** How long an MCP session lives unused (one in use is renewed; see touchMcpSession). */
export const MCP_SESSION_TTL_MS = 24 * 3600_000;

/** Renews a live session read at `now` if it is past half its life (one write per half-life). */
export async function renewIfOld(q: Queryable, row: SessionRow, now: Date): Promise<void> {
  const t = now.getTime();
  if (row.expiresAt.getTime() - t < MCP_SESSION_TTL_MS / 2)
    await renewMcpSession(
      q,
      row.idHash,
      now,
      new Date(t + MCP_SESSION_TTL_MS / 2),
      new Date(t + MCP_SESSION_TTL_MS),
    );
}

/**
 * The live session with this id hash, renewed if it is past half its life: a session in use (a
 * request, or its stream's keep-alive) does not expire.
 */
export async function touchMcpSession(
  q: Queryable,
  idHash: string,
  now: Date,
): Promise<SessionRow | undefined> {
  const row = await liveMcpSession(q, idHash, now);
  if (row) await renewIfOld(q, row, now);
  return row;
}

/** Ends the session if `tokenId` opened it and it is still open; whether it did. */
export async function endMcpSession(
  q: Queryable,
  idHash: string,
  tokenId: string,
  now: Date,
): Promise<boolean> {
  const ended = await q
    .update(mcpSessions)
    .set({ endedAt: now })
    .where(and(eq(mcpSessions.idHash, idHash), eq(mcpSessions.tokenId, tokenId), isNull(mcpSessions.endedAt)))
    .returning({ id: mcpSessions.idHash });
  return ended.length > 0;
}

/** Deletes sessions that expired or ended before `before`; how many. */
export async function deleteEndedMcpSessions(q: Queryable, before: Date): Promise<number> {
  const gone = await q
    .delete(mcpSessions)
    .where(or(lt(mcpSessions.expiresAt, before), lt(mcpSessions.endedAt, before)))
    .returning({ id: mcpSessions.idHash });
  return gone.length;
}
