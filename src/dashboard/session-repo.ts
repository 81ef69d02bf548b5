import { and, eq, gt, isNull, lt, or } from "drizzle-orm";
import type { Queryable } from "../db/client.js";
import { dashboardSessions, linkCodes } from "../db/schema.js";

/**
 * Dashboard sessions and one-time sign-in codes as rows. Only hashes of cookies and codes are
 * stored; every query takes the connection or transaction it runs in.
 */

type SessionRow = typeof dashboardSessions.$inferSelect;

export async function insertSession(q: Queryable, row: typeof dashboardSessions.$inferInsert): Promise<void> {
  await q.insert(dashboardSessions).values(row);
}

/** The session with this cookie hash if it is neither signed out nor expired at `now`. */
export async function liveSession(q: Queryable, idHash: string, now: Date): Promise<SessionRow | undefined> {
  const [row] = await q
    .select()
    .from(dashboardSessions)
    .where(
      and(
        eq(dashboardSessions.idHash, idHash),
        isNull(dashboardSessions.revokedAt),
        gt(dashboardSessions.expiresAt, now),
      ),
    );
  return row;
}

export async function endSession(q: Queryable, idHash: string, now: Date): Promise<void> {
  await q.update(dashboardSessions).set({ revokedAt: now }).where(eq(dashboardSessions.idHash, idHash));
}

/** Deletes sessions that expired or were signed out before `before`; how many. */
export async function deleteEndedSessions(q: Queryable, before: Date): Promise<number> {
  const gone = await q
    .delete(dashboardSessions)
    .where(or(lt(dashboardSessions.expiresAt, before), lt(dashboardSessions.revokedAt, before)))
    .returning({ id: dashboardSessions.idHash });
  return gone.length;
}

export async function insertLinkCode(
  q: Queryable,
  row: { codeHash: string; approver: string; createdAt: Date; expiresAt: Date },
): Promise<void> {
  await q.insert(linkCodes).values({ ...row, channel: "dashboard" });
}

/** Marks a dashboard sign-in code used, if it is unused and unexpired at `now`; its approver, or undefined. */
export async function useLinkCode(q: Queryable, codeHash: string, now: Date): Promise<string | undefined> {
  const [used] = await q
    .update(linkCodes)
    .set({ usedAt: now, usedBy: "dashboard" })
    .where(
      and(
        eq(linkCodes.codeHash, codeHash),
        eq(linkCodes.channel, "dashboard"),
        isNull(linkCodes.usedAt),
        gt(linkCodes.expiresAt, now),
      ),
    )
    .returning();
  return used?.approver;
}
