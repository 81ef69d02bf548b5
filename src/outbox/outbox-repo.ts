import { eq, type SQL, sql } from "drizzle-orm";
import { type Db, rowsOf, type Tx } from "../db/client.js";
import { outbox } from "../db/schema.js";

/** The outbox's rows: claiming the next due message, and recording what became of it. */

/** A message as a worker claims it. */
export interface OutboxRow {
  id: number | string;
  topic: string;
  key: string;
  payload: Record<string, unknown>;
  attempts: number;
}

/** How long a claimed message stays out of other instances' reach while it is delivered. */
const CLAIM_MS = 60_000;

/** `topics` as an SQL list, for `IN (…)`. */
export const topicList = (topics: readonly string[]): SQL =>
  sql.join(
    topics.map((t) => sql`${t}`),
    sql`, `,
  );

/**
 * Claims the oldest undelivered message of one of `topics` that is due and the first of its key,
 * in its own short transaction (`FOR UPDATE SKIP LOCKED`: instances never take the same one). It
 * is pushed out of reach for a while, so a crash while delivering only delays it.
 */
export async function claimNext(db: Db, topics: SQL, now: Date): Promise<OutboxRow | undefined> {
  return db.transaction(async (tx) => {
    const rows = rowsOf<OutboxRow>(
      await tx.execute(sql`
            SELECT o.id, o.topic, o.key, o.payload, o.attempts FROM outbox o
            WHERE o.delivered_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= ${now.toISOString()}
              AND o.topic IN (${topics})
              AND NOT EXISTS (
                SELECT 1 FROM outbox p
                WHERE p.key = o.key AND p.id < o.id AND p.delivered_at IS NULL AND p.failed_at IS NULL)
            ORDER BY o.id
            LIMIT 1
            FOR UPDATE SKIP LOCKED`),
    );
    const row = rows[0];
    if (!row) return undefined;
    await tx
      .update(outbox)
      .set({ nextAttemptAt: new Date(now.getTime() + CLAIM_MS) })
      .where(eq(outbox.id, Number(row.id)));
    return row;
  });
}

export async function markDelivered(tx: Tx, id: number, attempts: number, at: Date): Promise<void> {
  await tx.update(outbox).set({ deliveredAt: at, attempts, lastError: null }).where(eq(outbox.id, id));
}

export async function markGivenUp(
  tx: Tx,
  id: number,
  attempts: number,
  at: Date,
  error: string,
): Promise<void> {
  await tx.update(outbox).set({ attempts, failedAt: at, lastError: error }).where(eq(outbox.id, id));
}

export async function markRetry(
  db: Db,
  id: number,
  attempts: number,
  next: Date,
  error: string,
): Promise<void> {
  await db.update(outbox).set({ attempts, nextAttemptAt: next, lastError: error }).where(eq(outbox.id, id));
}
