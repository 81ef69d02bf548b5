import { and, asc, desc, eq, gte, inArray, isNull, or, sql } from "drizzle-orm";
import type { AgentIdentity } from "../agents/token-service.js";
import type { Db, Tx } from "../db/client.js";
import {
  accessRequests,
  agentTokens,
  auditEvents,
  grants,
  requestReviews,
  singleUseGrants,
} from "../db/schema.js";
import { AppError } from "../errors.js";
import type { ListFilter } from "./context.js";
import {
  type GrantOfRequest,
  type GrantRow,
  type RequestRow,
  type ReviewRow,
  toView,
  type Viewed,
} from "./request-view.js";

/**
 * The requests' tables as the Butler reads and locks them (drizzle only; the caller passes its
 * transaction or the database).
 */

/**
 * Requests as the API shows them, with their grants: one query per table whatever the number of
 * requests (the dashboard lists hundreds).
 */
export async function views(q: Db | Tx, rows: readonly RequestRow[]): Promise<Viewed[]> {
  if (rows.length === 0) return [];
  const reviews = await q
    .select()
    .from(requestReviews)
    .where(
      and(
        inArray(
          requestReviews.requestId,
          rows.map((r) => r.id),
        ),
        eq(requestReviews.verdict, "approve"),
      ),
    )
    .orderBy(asc(requestReviews.createdAt));
  const approved = rows.filter((r) => r.status === "approved");
  const ids = (kind: RequestRow["kind"]) => approved.filter((r) => r.kind === kind).map((r) => r.id);
  const grantRows: GrantOfRequest[] = [
    ...(ids("grant").length === 0
      ? []
      : (
          await q
            .select()
            .from(grants)
            .where(inArray(grants.id, ids("grant")))
        ).map((g) => ({ ...g, usedAt: null }))),
    ...(ids("one_shot").length === 0
      ? []
      : await q
          .select()
          .from(singleUseGrants)
          .where(inArray(singleUseGrants.id, ids("one_shot")))),
  ];
  const grantOf = new Map(grantRows.map((g) => [g.id, g]));
  const reviewsOf = new Map<string, ReviewRow[]>();
  for (const v of reviews) reviewsOf.set(v.requestId, [...(reviewsOf.get(v.requestId) ?? []), v]);
  return rows.map((r) => {
    const grant = r.status === "approved" ? grantOf.get(r.id) : undefined;
    return { row: r, grant, view: toView(r, reviewsOf.get(r.id) ?? [], grant) };
  });
}

/** One request as `views` shows it. */
export async function viewOne(q: Db | Tx, r: RequestRow): Promise<Viewed> {
  return (await views(q, [r]))[0]!;
}

/**
 * The rows of requests matching `filter`, newest first. `projects`: only requests of these
 * projects (an approver's), when given.
 */
export async function listRows(
  db: Db,
  filter: ListFilter,
  projects: readonly string[] | undefined,
): Promise<RequestRow[]> {
  const conds = [];
  if (filter.status) conds.push(eq(accessRequests.status, filter.status));
  if (filter.pendingOrDecidedSince)
    conds.push(
      or(eq(accessRequests.status, "pending"), gte(accessRequests.decidedAt, filter.pendingOrDecidedSince))!,
    );
  if (filter.project) conds.push(eq(accessRequests.project, filter.project));
  if (projects !== undefined) {
    if (projects.length === 0) return [];
    conds.push(inArray(accessRequests.project, [...projects]));
  }
  return db
    .select()
    .from(accessRequests)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(desc(accessRequests.createdAt))
    .limit(Math.min(filter.limit ?? 100, 1000));
}

/** A request, or undefined. */
export async function findRequest(q: Db | Tx, id: string): Promise<RequestRow | undefined> {
  const [r] = await q.select().from(accessRequests).where(eq(accessRequests.id, id));
  return r;
}

/** A request, or NOT_FOUND. */
export async function requireRequest(q: Db | Tx, id: string): Promise<RequestRow> {
  const r = await findRequest(q, id);
  if (!r) throw new AppError("NOT_FOUND", `no access request ${id}`);
  return r;
}

/** The request's row, locked for the rest of the transaction (decisions are serialised on it). */
export async function lockRequest(tx: Tx, id: string): Promise<RequestRow> {
  const [r] = await tx.select().from(accessRequests).where(eq(accessRequests.id, id)).for("update");
  if (!r) throw new AppError("NOT_FOUND", `no access request ${id}`);
  return r;
}

/**
 * Moves a pending request on (decided, expired, superseded): the row as written, or undefined
 * when it was no longer pending.
 */
export async function updateIfPending(
  tx: Tx,
  id: string,
  values: Partial<typeof accessRequests.$inferInsert>,
): Promise<RequestRow | undefined> {
  const [row] = await tx
    .update(accessRequests)
    .set(values)
    .where(and(eq(accessRequests.id, id), eq(accessRequests.status, "pending")))
    .returning();
  return row;
}

/** Every review of a request. */
export function reviewsOf(tx: Tx, id: string): Promise<ReviewRow[]> {
  return tx.select().from(requestReviews).where(eq(requestReviews.requestId, id));
}

/** The identical request pending under `dedupeKey`, if any (whatever its deadline). */
export async function pendingByKey(tx: Tx, dedupeKey: string): Promise<RequestRow | undefined> {
  const [r] = await tx
    .select()
    .from(accessRequests)
    .where(and(eq(accessRequests.dedupeKey, dedupeKey), eq(accessRequests.status, "pending")));
  return r;
}

/** The denial event, if it is this agent's. */
export async function readDenialEvent(db: Db, identity: AgentIdentity, eventId: string) {
  const [e] = await db.select().from(auditEvents).where(eq(auditEvents.eventId, eventId));
  // Another agent's event is "not found": its existence is none of this agent's business.
  if (e?.type !== "gateway.denied" || e.agent !== identity.agent || e.project !== identity.project) {
    throw new AppError(
      "NOT_FOUND",
      `denial_event_id: no denial ${eventId} of agent ${identity.agent} in ${identity.project}`,
    );
  }
  return e;
}

export type AuditRow = typeof auditEvents.$inferSelect;

/**
 * The audit line a request's row (or one of its reviews) recorded as its own: by the event id the
 * row keeps; for rows kept before they held one (the migrations fill them in, but an older
 * instance may still be writing), by a scan of the agent's lines (`agent` is indexed).
 */
export async function ownLine(
  tx: Tx,
  eventId: string | null,
  r: RequestRow,
  type: "access_request.filed" | "access_request.approval_recorded",
  approver?: string,
): Promise<AuditRow | undefined> {
  const [line] = eventId
    ? await tx.select().from(auditEvents).where(eq(auditEvents.eventId, eventId))
    : await tx
        .select()
        .from(auditEvents)
        .where(
          and(
            eq(auditEvents.agent, r.agent),
            eq(auditEvents.type, type),
            sql`${auditEvents.details}->>'request_id' = ${r.id}`,
            ...(approver === undefined ? [] : [sql`${auditEvents.details}->>'approver' = ${approver}`]),
          ),
        )
        .limit(1);
  return line?.type === type && line.details.request_id === r.id ? line : undefined;
}

/** When the agent token that filed a request was revoked (undefined: it was not). */
export async function tokenRevokedAt(tx: Tx, tokenId: string): Promise<Date | undefined> {
  const [token] = await tx
    .select({ revokedAt: agentTokens.revokedAt })
    .from(agentTokens)
    .where(eq(agentTokens.id, tokenId));
  return token?.revokedAt ?? undefined;
}

/** Grants, newest first; active only unless `all`. */
export async function grantRows(
  db: Db,
  filter: { project?: string | undefined; all?: boolean; projects?: string[] },
  now: Date,
): Promise<GrantRow[]> {
  const conds = [];
  if (filter.project) conds.push(eq(grants.project, filter.project));
  if (filter.projects) {
    if (filter.projects.length === 0) return [];
    conds.push(inArray(grants.project, filter.projects));
  }
  if (!filter.all) conds.push(isNull(grants.revokedAt), sql`${grants.expiresAt} > ${now.toISOString()}`);
  return db
    .select()
    .from(grants)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(desc(grants.createdAt))
    .limit(1000);
}

/** The project a grant (a policy grant or a single-use one) belongs to. */
export async function grantProject(db: Db, grantId: string): Promise<string> {
  const [g] = await db.select({ project: grants.project }).from(grants).where(eq(grants.id, grantId));
  const [one] = g
    ? []
    : await db
        .select({ project: singleUseGrants.project })
        .from(singleUseGrants)
        .where(eq(singleUseGrants.id, grantId));
  const found = g ?? one;
  if (!found) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
  return found.project;
}
