import type { ChangeBus } from "../db/changes.js";

/** Values kept at most; past it, the cache starts again (a cache, never the truth). */
const MAX_CACHED = 100_000;

/**
 * A per-agent value this instance keeps in memory (a trust score, a drift level), dropped when any
 * instance publishes a change of that `kind` for the agent, and all of them on a resync. A read or
 * a write that a notification overtook keeps nothing (`generation`), so a value older than the
 * stored one is never kept.
 */
export function agentCache<V>(changes: Pick<ChangeBus, "subscribe">, kind: "trust" | "drift") {
  const cache = new Map<string, V>();
  let generation = 0;
  const key = (project: string, agent: string) => `${project}\u0000${agent}`;
  changes.subscribe((c) => {
    if (c.kind === kind) {
      generation++;
      cache.delete(key(c.project, c.agent));
    } else if (c.kind === "resync") {
      generation++;
      cache.clear();
    }
  });
  const keep = (k: string, v: V) => {
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(k, v);
  };
  return {
    /** Where a write starts: `settled` keeps its value only if no notification came since. */
    generation: () => generation,
    /** The value kept, or `load`'s (kept unless a notification arrived while it loaded). */
    async get(project: string, agent: string, load: () => Promise<V>): Promise<V> {
      const k = key(project, agent);
      if (cache.has(k)) return cache.get(k) as V;
      const started = generation;
      const v = await load();
      if (generation === started) keep(k, v);
      return v;
    },
    /** This instance committed `v`: kept, unless a notification arrived since `started` (then dropped). */
    settled(project: string, agent: string, started: number, v: V): void {
      const quiet = generation === started;
      generation++;
      if (quiet) keep(key(project, agent), v);
      else cache.delete(key(project, agent));
    },
    /** This instance changed the stored value: the next read is fresh. */
    forget(project: string, agent: string): void {
      generation++;
      cache.delete(key(project, agent));
    },
  };
}
