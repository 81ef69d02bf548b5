import { sql } from "drizzle-orm";
import type { Database, PreparedStatement } from "../db/client.js";
import { AppError, asAppError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { AuditLine } from "./chain.js";
import {
  COLUMN_LIST,
  chainAfter,
  type Head,
  type PendingEvent,
  ROW_FIELDS,
  ROW_TYPES,
  readHead,
  rowsJson,
  writeChained,
} from "./event-write.js";

type Waiter = {
  event: PendingEvent;
  resolve: (l: AuditLine) => void;
  reject: (e: unknown) => void;
  attempts: number;
  /** Whether the caller must wait for the commit to be flushed to disk (else it may be answered before). */
  flush: boolean;
};

const OPTIMISTIC_ATTEMPTS = 4;

/** The group committer's state: what waits, whether a batch is being written, and the head. */
interface Committer {
  database: Database;
  log: Logger;
  batchMax: number;
  /** Told of every write's lines once they are committed. */
  written: (lines: readonly AuditLine[]) => void;
  queue: Waiter[];
  writing: boolean;
  idle: (() => void)[];
  /**
   * The head as this instance last wrote it. Undefined when unknown (at start, and after a batch
   * failed or lost a race to another writer): the next batch reads the real head first.
   */
  tail: Head | undefined;
}

/**
 * One batch's statement: move the head only if it is where the batch was chained after ($3, $4),
 * and insert the lines ($5, one JSON array) only if it was moved; the count says whether they
 * were. A named prepared statement: parsed and planned once per connection.
 */
const batchStatement = (name: string, final: string): PreparedStatement => ({
  name,
  text: `WITH moved AS (
      UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 AND hash = $4 RETURNING 1
    ), inserted AS (
      INSERT INTO audit_events ${COLUMN_LIST}
      SELECT r.* FROM (SELECT ${ROW_FIELDS} FROM json_to_recordset($5::json) AS ${ROW_TYPES}) AS r
      WHERE EXISTS (SELECT 1 FROM moved)
      RETURNING 1
    )
    ${final}`,
});

const WRITE_BATCH = batchStatement("butler_audit_batch", "SELECT count(*)::int AS n FROM inserted");
/**
 * The same for a batch whose callers may all be answered before the disk flush: it turns
 * `synchronous_commit` off for its own (implicit) transaction only. The setting is read when that
 * transaction commits, at the end of the statement, and reverts with it.
 */
const WRITE_BATCH_NO_FLUSH = batchStatement(
  "butler_audit_batch_no_flush",
  "SELECT (SELECT count(*)::int FROM inserted) AS n, set_config('synchronous_commit', 'off', true) AS sc",
);

/** Whether any caller of the batch waits for the disk flush. */
const needsFlush = (batch: readonly Waiter[]) => batch.some((w) => w.flush);

/** Writes `lines` (chained after `head`) only if the head is still there; whether it was. */
async function writeIfHeadAt(
  c: Committer,
  head: Head,
  lines: AuditLine[],
  events: PendingEvent[],
  flush: boolean,
) {
  const last = lines.at(-1)!;
  const rows = await c.database.prepared(flush ? WRITE_BATCH : WRITE_BATCH_NO_FLUSH, [
    last.seq,
    last.hash,
    head.seq,
    head.hash,
    rowsJson(lines, events),
  ]);
  return rows[0]?.n === lines.length;
}

/** Resolves a committed batch's callers. */
function committed(c: Committer, batch: Waiter[], lines: AuditLine[]): void {
  for (let i = 0; i < batch.length; i++) batch[i]!.resolve(lines[i]!);
  c.written(lines);
}

/**
 * Whether a failed statement committed cannot be known, so its events are not retried: their
 * callers are refused (fail closed) and the next batch starts from the real head.
 */
function failed(c: Committer, batch: Waiter[], e: unknown): void {
  c.tail = undefined;
  c.log.error({ err: e, events: batch.length }, "audit batch failed to commit");
  const failure = new AppError(
    "UNAVAILABLE",
    "the audit log could not be written; nothing was decided",
    undefined,
    {
      cause: e,
    },
  );
  for (const w of batch) w.reject(failure);
  // The database cannot be reached: the events queued meanwhile would only wait for the next
  // statement to time out in turn. They are refused now (503: try again), so that no caller
  // waits more than about two statement timeouts.
  if (asAppError(e)?.code === "UNAVAILABLE") {
    const waiting = c.queue;
    c.queue = [];
    for (const w of waiting) w.reject(failure);
  }
}

/**
 * One batch of the group committer, in one statement (one round trip): move the head only if it
 * is where `head` says, and insert the events only if it was moved. The UPDATE takes the head's
 * row lock, so a concurrent writer waits for it and then re-checks the condition. If the head is
 * elsewhere (another instance or an appendInTx moved it), nothing is written and the batch is
 * retried after the real head is read; after a few lost races it takes the locking path.
 */
async function sendBatch(c: Committer, batch: Waiter[]): Promise<void> {
  const events = batch.map((w) => w.event);
  const flush = needsFlush(batch);
  try {
    if (batch[0]!.attempts >= OPTIMISTIC_ATTEMPTS) {
      const lines = await c.database.db.transaction(async (tx) => {
        if (!flush) await tx.execute(sql`SET LOCAL synchronous_commit = off`);
        return writeChained(tx, events);
      });
      committed(c, batch, lines);
      return;
    }
    const head = c.tail ?? (await readHead(c.database.db));
    const lines = chainAfter(head, events);
    const last = lines.at(-1)!;
    c.tail = { seq: last.seq, hash: last.hash };
    if (await writeIfHeadAt(c, head, lines, events, flush)) {
      committed(c, batch, lines);
      return;
    }
    // Nothing was written: retry these events first, from the real head.
    c.tail = undefined;
    for (const w of batch) w.attempts++;
    c.queue = [...batch, ...c.queue];
  } catch (e) {
    failed(c, batch, e);
  }
}

/** Writes the queued events, a batch at a time, until the queue is empty. */
function kick(c: Committer): void {
  if (c.writing || c.queue.length === 0) return;
  c.writing = true;
  const batch = c.queue.length <= c.batchMax ? c.queue : c.queue.slice(0, c.batchMax);
  c.queue = c.queue.length <= c.batchMax ? [] : c.queue.slice(c.batchMax);
  void sendBatch(c, batch).finally(() => {
    c.writing = false;
    kick(c);
    if (!c.writing && c.queue.length === 0) {
      for (const r of c.idle) r();
      c.idle = [];
    }
  });
}

/**
 * The group committer: many events per statement, one batch at a time; every event that arrives
 * while a batch commits goes into the next one. Each caller is resolved only after the commit.
 */
export function createGroupCommitter(opts: Pick<Committer, "database" | "log" | "batchMax" | "written">) {
  const c: Committer = { ...opts, queue: [], writing: false, idle: [], tail: undefined };
  return {
    /**
     * Queues one event; resolves with its line once it is committed (and flushed to disk, unless
     * `flush` is false and no other event of its batch needs the flush).
     */
    enqueue: (event: PendingEvent, flush = true): Promise<AuditLine> =>
      new Promise<AuditLine>((resolve, reject) => {
        c.queue.push({ event, resolve, reject, attempts: 0, flush });
        kick(c);
      }),
    /**
     * Queues events one after the other, kicking the writer once they are all queued, so that they
     * go into one batch (one commit) unless the queue is longer than a batch; resolves with their
     * lines once every one is committed (and flushed, as for `enqueue`, unless its `flush` is false).
     */
    enqueueAll: (events: readonly { event: PendingEvent; flush: boolean }[]): Promise<AuditLine[]> => {
      const lines = events.map(
        ({ event, flush }) =>
          new Promise<AuditLine>((resolve, reject) => {
            c.queue.push({ event, resolve, reject, attempts: 0, flush });
          }),
      );
      kick(c);
      return Promise.all(lines);
    },
    depth: (): number => c.queue.length,
    /** Resolves once every queued event is committed (or failed). */
    idle: async (): Promise<void> => {
      if (!c.writing && c.queue.length === 0) return;
      await new Promise<void>((resolve) => c.idle.push(resolve));
    },
  };
}
