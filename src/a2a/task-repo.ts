import { and, count, desc, eq, gt, lt, ne, notInArray, or, type SQL, sql } from "drizzle-orm";
import type { AgentIdentity } from "../agents/token-service.js";
import { type Queryable, rowsOf, type Tx } from "../db/client.js";
import { a2aTasks, accessRequests } from "../db/schema.js";
import type { TaskListQuery } from "./sdk-mapping.js";
import { TERMINAL } from "./task-state.js";

/**
 * The rows of A2A tasks (drizzle only). Every function takes the query runner first: the caller's
 * transaction when it is part of one, the database otherwise.
 */

export type TaskRow = typeof a2aTasks.$inferSelect;
export type NewTaskRow = typeof a2aTasks.$inferInsert;

/** The form of the task ids the Butler gives out (newId("task")). */
export const TASK_ID = /^task_[a-z0-9]{16}$/;

/** A task of this agent; another agent's task is exactly as invisible as one that does not exist. */
export async function findOwnedTask(
  q: Queryable,
  owner: AgentIdentity,
  id: string,
): Promise<TaskRow | undefined> {
  // Only ids of the Butler's own form reach the database: any other text is no task of ours.
  if (typeof id !== "string" || !TASK_ID.test(id)) return undefined;
  const [row] = await q
    .select()
    .from(a2aTasks)
    .where(and(eq(a2aTasks.id, id), eq(a2aTasks.agent, owner.agent), eq(a2aTasks.project, owner.project)));
  return row;
}

export async function findTask(q: Queryable, id: string): Promise<TaskRow | undefined> {
  const [row] = await q.select().from(a2aTasks).where(eq(a2aTasks.id, id));
  return row;
}

/** A task, locked until `tx` ends. */
export async function lockTask(tx: Tx, id: string): Promise<TaskRow | undefined> {
  const [row] = await tx.select().from(a2aTasks).where(eq(a2aTasks.id, id)).for("update");
  return row;
}

export async function insertTask(tx: Tx, row: NewTaskRow): Promise<void> {
  await tx.insert(a2aTasks).values(row);
}

/** Writes a task's new state; returns the row as it is afterwards. */
export async function updateTask(
  tx: Tx,
  id: string,
  set: Pick<TaskRow, "state" | "grantState" | "task" | "version" | "updatedAt">,
): Promise<TaskRow> {
  const [updated] = await tx.update(a2aTasks).set(set).where(eq(a2aTasks.id, id)).returning();
  return updated!;
}

/** Another task, not ended, that waits on the same access request (one is enough). */
export async function otherLiveTask(
  tx: Tx,
  requestId: string,
  exceptId: string,
): Promise<{ id: string } | undefined> {
  const [other] = await tx
    .select({ id: a2aTasks.id })
    .from(a2aTasks)
    .where(
      and(
        eq(a2aTasks.requestId, requestId),
        ne(a2aTasks.id, exceptId),
        notInArray(a2aTasks.state, [...TERMINAL]),
      ),
    )
    .limit(1);
  return other;
}

/** The ids of an agent's tasks that wait on an access request. */
export async function taskIdsOfRequest(
  q: Queryable,
  r: { requestId: string; agent: string; project: string },
): Promise<string[]> {
  const rows = await q
    .select({ id: a2aTasks.id })
    .from(a2aTasks)
    .where(
      and(eq(a2aTasks.requestId, r.requestId), eq(a2aTasks.agent, r.agent), eq(a2aTasks.project, r.project)),
    );
  return rows.map((r) => r.id);
}

/**
 * The status of the access request a new task will wait on, share-locked until `tx` ends: an
 * agent cancelling its other task on the same request decides under this lock.
 */
export async function lockRequestStatus(tx: Tx, requestId: string): Promise<string | undefined> {
  const [r] = await tx
    .select({ status: accessRequests.status })
    .from(accessRequests)
    .where(eq(accessRequests.id, requestId))
    .for("share");
  return r?.status;
}

/**
 * Tasks whose request moved without the task hearing of it: still submitted, waiting on a
 * decided request, or showing a live grant that was revoked or has expired.
 */
export async function staleTaskIds(q: Queryable, now: Date, limit: number): Promise<string[]> {
  const rows = rowsOf<{ id: string }>(
    await q.execute(sql`
      SELECT t.id FROM a2a_tasks t JOIN access_requests r ON r.id = t.request_id
      LEFT JOIN grants g ON g.id = r.id
      WHERE t.state = 'submitted'
         OR (t.state = 'input_required' AND r.status <> 'pending')
         OR (t.state = 'completed' AND t.grant_state = 'live'
             AND (g.revoked_at IS NOT NULL OR g.expires_at <= ${now.toISOString()}))
      LIMIT ${limit}`),
  );
  return rows.map((r) => r.id);
}

/**
 * One page of an agent's tasks, newest change first, with the number of tasks matching the
 * filter (on every page). Reads one page more than asked so that the caller knows there is more.
 */
export async function listOwnedTasks(
  q: Queryable,
  owner: AgentIdentity,
  query: TaskListQuery,
): Promise<{ rows: TaskRow[]; total: number }> {
  const where: SQL[] = [eq(a2aTasks.agent, owner.agent), eq(a2aTasks.project, owner.project)];
  if (query.contextId) where.push(eq(a2aTasks.contextId, query.contextId));
  if (query.state) where.push(eq(a2aTasks.state, query.state));
  if (query.updatedAfter) where.push(gt(a2aTasks.updatedAt, query.updatedAfter));
  const [{ total }] = (await q
    .select({ total: count() })
    .from(a2aTasks)
    .where(and(...where))) as [{ total: number }];
  const b = query.before;
  if (b)
    where.push(
      or(
        lt(a2aTasks.updatedAt, b.updatedAt),
        and(eq(a2aTasks.updatedAt, b.updatedAt), lt(a2aTasks.id, b.id)),
      )!,
    );
  const rows = await q
    .select()
    .from(a2aTasks)
    .where(and(...where))
    .orderBy(desc(a2aTasks.updatedAt), desc(a2aTasks.id))
    .limit(query.pageSize + 1);
  return { rows, total: Number(total) };
}
