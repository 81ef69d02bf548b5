import { and, eq, lt, sql } from "drizzle-orm";
import type { Db } from "../db/client.js";
import { rateCounts } from "../db/schema.js";
import { mustCompileGlob } from "../policy/glob.js";
import type { RateLimitDef } from "../policy/types.js";

/**
 * A project's rate limits (`rate_limits:`), counted in the database so that every instance counts
 * the same calls. Each limit is a sliding window reckoned from two fixed windows: the calls of the
 * current window plus the previous window's, weighted by how much of it the sliding window still
 * covers. A call is counted only when every limit that applies has room for it (in one
 * transaction); a refused call is not counted.
 */

/** Why a call may not go out now. */
export interface RateRefusal {
  limit: RateLimitDef;
  /** Seconds until the window has room again (at most its length). */
  retryAfterSeconds: number;
}

export interface RateLimiter {
  /** Counts the call against every limit that applies, or names the first that has no room (nothing counted). */
  take(
    call: { project: string; agent: string; action: string },
    limits: readonly RateLimitDef[],
    now: Date,
  ): Promise<RateRefusal | undefined>;
  /** Deletes counters that can no longer count. */
  purge(now: Date): Promise<void>;
}

const matchers = new WeakMap<RateLimitDef, (action: string) => boolean>();

/** Whether the limit counts this agent's call of `action`. */
export function limitApplies(limit: RateLimitDef, agent: string, action: string): boolean {
  if (limit.agents && !limit.agents.includes(agent)) return false;
  if (!limit.actions) return true;
  let m = matchers.get(limit);
  if (!m) {
    const globs = limit.actions.map(mustCompileGlob);
    m = (a) => globs.some((g) => g.match(a));
    matchers.set(limit, m);
  }
  return m(action);
}

class Refused extends Error {
  constructor(readonly refusal: RateRefusal) {
    super("rate limited");
  }
}

export function createRateLimiter(db: Db): RateLimiter {
  /** The previous window's count per key, once that window is over (it no longer changes). */
  const previous = new Map<string, { start: number; count: number }>();

  async function previousCount(tx: Db, key: string, start: number): Promise<number> {
    const cached = previous.get(key);
    if (cached?.start === start) return cached.count;
    const [row] = await tx
      .select({ count: rateCounts.count })
      .from(rateCounts)
      .where(and(eq(rateCounts.key, key), eq(rateCounts.windowStart, start)));
    const count = row?.count ?? 0;
    if (previous.size > 10_000) previous.clear();
    previous.set(key, { start, count });
    return count;
  }

  async function takeOne(tx: Db, key: string, limit: RateLimitDef, nowMs: number): Promise<void> {
    const w = limit.windowSeconds * 1000;
    const start = Math.floor(nowMs / w) * w;
    const covered = 1 - (nowMs - start) / w;
    const before = await previousCount(tx, key, start - w);
    // An estimate: the previous window's calls are taken as spread evenly over it (rounded up).
    const room = limit.maxCalls - Math.ceil(before * covered);
    const refusal = { limit, retryAfterSeconds: Math.max(1, Math.ceil((start + w - nowMs) / 1000)) };
    if (room <= 0) throw new Refused(refusal);
    const [counted] = await tx
      .insert(rateCounts)
      .values({ key, windowStart: start, count: 1, expiresAt: new Date(start + 2 * w) })
      .onConflictDoUpdate({
        target: [rateCounts.key, rateCounts.windowStart],
        set: { count: sql`${rateCounts.count} + 1` },
        setWhere: sql`${rateCounts.count} < ${room}`,
      })
      .returning({ count: rateCounts.count });
    if (!counted) throw new Refused(refusal);
  }

  return {
    async take(call, limits, now) {
      const applying = limits.filter((l) => limitApplies(l, call.agent, call.action));
      if (applying.length === 0) return undefined;
      const keys = applying.map((l) =>
        JSON.stringify([
          call.project,
          l.id,
          l.windowSeconds,
          l.maxCalls,
          call.agent,
          l.per === "action" ? call.action : "",
        ]),
      );
      try {
        if (applying.length === 1) await takeOne(db, keys[0]!, applying[0]!, now.getTime());
        else
          await db.transaction(async (tx) => {
            for (let i = 0; i < applying.length; i++)
              await takeOne(tx as Db, keys[i]!, applying[i]!, now.getTime());
          });
        return undefined;
      } catch (e) {
        if (e instanceof Refused) return e.refusal;
        throw e;
      }
    },

    async purge(now) {
      await db.delete(rateCounts).where(lt(rateCounts.expiresAt, now));
    },
  };
}
