import { sql } from "drizzle-orm";
import type { Logger } from "../logger.js";
import type { Database, Queryable } from "./client.js";

/** The NOTIFY channel every instance listens on. */
export const CHANGES_CHANNEL = "butler_changes";

/**
 * Something changed that other instances cache. `resync` is synthesised locally when the
 * listening connection was re-established and notifications may have been missed.
 */
export type Change =
  | { kind: "policy"; project: string }
  | { kind: "tokens" }
  /** A provider credential was stored or deleted (instances drop the values they keep). */
  | { kind: "credentials" }
  | { kind: "a2a_task"; taskId: string }
  /** An agent's pact was set through the admin API (instances reload the pacts in force). */
  | { kind: "pacts" }
  /** An agent's trust score changed (instances drop the score they keep). */
  | { kind: "trust"; project: string; agent: string }
  /** An agent's drift level changed in some dimension (instances drop the level they keep). */
  | { kind: "drift"; project: string; agent: string }
  | { kind: "resync" };

/**
 * Tells every instance (this one included) about changes, through PostgreSQL LISTEN/NOTIFY on both
 * engines. `publish` inside a transaction is delivered only if and when that transaction commits.
 */
export function createChangeBus(database: Database, log: Logger) {
  const handlers = new Set<(c: Change) => void>();
  let unlisten: (() => Promise<void>) | undefined;
  const dispatch = (c: Change) => {
    for (const h of handlers) {
      try {
        h(c);
      } catch (e) {
        log.error({ err: e, change: c }, "change handler failed");
      }
    }
  };
  return {
    async start(): Promise<void> {
      unlisten = await database.listen(
        CHANGES_CHANNEL,
        (payload) => {
          let c: Change;
          try {
            c = JSON.parse(payload) as Change;
          } catch {
            log.warn({ payload }, "ignoring malformed change notification");
            return;
          }
          dispatch(c);
        },
        () => dispatch({ kind: "resync" }),
      );
    },
    subscribe(handler: (c: Change) => void): () => void {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async publish(q: Queryable, change: Change): Promise<void> {
      await q.execute(sql`SELECT pg_notify(${CHANGES_CHANNEL}, ${JSON.stringify(change)})`);
    },
    async stop(): Promise<void> {
      await unlisten?.();
      unlisten = undefined;
      handlers.clear();
    },
  };
}

export type ChangeBus = ReturnType<typeof createChangeBus>;
