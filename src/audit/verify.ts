import { sql } from "drizzle-orm";
import { type Queryable, rowsOf } from "../db/client.js";
import { readHead, readLines } from "./audit-log.js";
import { type ChainBreak, ChainVerifier } from "./chain.js";

export interface VerifyResult {
  ok: boolean;
  /** Events checked. */
  count: number;
  /** Sequence number up to which the chain is intact. */
  verifiedThrough: number;
  /** The first broken link, when there is one. */
  break: ChainBreak | undefined;
}

/**
 * Recomputes the whole chain from the stored columns (not from any stored copy of the JSON), in
 * constant memory, and checks that it ends at the recorded head: a removed tail is a break too.
 */
export async function verifyAuditChain(db: Queryable): Promise<VerifyResult> {
  // Read the head first: events appended while we verify are after it and are not our concern.
  const head = await readHead(db);
  const v = new ChainVerifier();
  for await (const line of readLines(db)) {
    if (line.seq > head.seq) break;
    if (v.push(line)) break;
  }
  let broken = v.broken;
  if (!broken && (v.last.seq !== head.seq || v.last.hash !== head.hash)) {
    broken =
      v.last.seq < head.seq
        ? {
            seq: v.last.seq + 1,
            problem: `the chain head records ${head.seq} events but the log ends at ${v.last.seq}: events were removed`,
          }
        : { seq: v.last.seq, problem: "the last event does not match the recorded chain head" };
  }
  if (!broken) {
    // Rows past the head (a head moved back by hand) would otherwise go unnoticed. Head and maximum
    // are read in one statement, so appends committing meanwhile cannot look like a problem.
    const [now] = rowsOf<{ head: number | string; max: number | string | null }>(
      await db.execute(
        sql`SELECT (SELECT seq FROM audit_head WHERE id = 1) AS head, (SELECT max(seq) FROM audit_events) AS max`,
      ),
    );
    if (now && now.max !== null && Number(now.max) > Number(now.head)) {
      broken = {
        seq: Number(now.head) + 1,
        problem: `events exist after the recorded chain head (sequence ${now.head}): the head was moved back`,
      };
    }
  }
  return { ok: !broken, count: v.count, verifiedThrough: v.last.seq, break: broken };
}
