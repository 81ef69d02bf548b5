import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import pg from "pg";
import type { Logger } from "../logger.js";
import * as schema from "./schema.js";

/** A drizzle database over either driver; both satisfy this type. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
/** The transaction handle drizzle passes to `db.transaction(fn)`. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
/** Either a database or a transaction: what repository methods accept. */
export type Queryable = Db | Tx;

export type NotificationHandler = (payload: string) => void;

/**
 * An open database. Everything but the driver and LISTEN/NOTIFY plumbing is the same for
 * embedded PGlite and for PostgreSQL.
 */
export interface Database {
  readonly kind: "pglite" | "postgres";
  readonly db: Db;
  /**
   * Calls `handler` with the payload of every NOTIFY on `channel`. `onReconnect` runs when the
   * listening connection was lost and re-established: notifications may have been missed.
   */
  listen(
    channel: string,
    handler: NotificationHandler,
    onReconnect?: () => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export type DatabaseConfig =
  | { kind: "postgres"; url: string; poolSize: number }
  | { kind: "pglite"; dataDir: string };

export async function openDatabase(cfg: DatabaseConfig, log: Logger): Promise<Database> {
  if (cfg.kind === "postgres") {
    // Timeouts and keepalive: a database that stops answering must turn into errors (503s), not
    // into requests that hang until the operating system gives up on the connection.
    const pool = new pg.Pool({
      connectionString: cfg.url,
      max: cfg.poolSize,
      connectionTimeoutMillis: 10_000,
      query_timeout: 30_000,
      keepAlive: true,
    });
    try {
      const c = await pool.connect();
      c.release();
    } catch (e) {
      await pool.end();
      throw e;
    }
    return postgresDatabase(pool, cfg.url, log);
  }
  const client = await PGlite.create(cfg.dataDir);
  return pgliteDatabase(client);
}

/** Wraps an open PGlite client (embedded PostgreSQL in this process). */
export function pgliteDatabase(client: PGlite): Database {
  return {
    kind: "pglite",
    db: drizzlePglite({ client, schema }) as unknown as Db,
    async listen(channel, handler) {
      const unsubscribe = await client.listen(channel, handler);
      return async () => {
        if (!client.closed) await unsubscribe();
      };
    },
    close: () => (client.closed ? Promise.resolve() : client.close()),
  };
}

/** Wraps a node-postgres pool. LISTEN uses its own connection, re-established when it drops. */
export function postgresDatabase(pool: pg.Pool, url: string, log: Logger): Database {
  // An idle client that errors (server restart, connection terminated) must not crash the
  // process; the pool replaces it.
  pool.on("error", (e) => log.warn({ err: e }, "idle PostgreSQL connection failed"));
  const listeners = new Set<{ stop: () => Promise<void> }>();
  return {
    kind: "postgres",
    db: drizzlePg({ client: pool, schema }) as unknown as Db,
    async listen(channel, handler, onReconnect) {
      const l = new PgListener(url, channel, handler, onReconnect, log);
      await l.start();
      listeners.add(l);
      return async () => {
        listeners.delete(l);
        await l.stop();
      };
    },
    async close() {
      await Promise.all([...listeners].map((l) => l.stop()));
      listeners.clear();
      await pool.end();
    },
  };
}

class PgListener {
  #client: pg.Client | undefined;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;
  #attempt = 0;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly handler: NotificationHandler,
    private readonly onReconnect: (() => void) | undefined,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
    });
    client.on("notification", (m) => {
      if (m.channel === this.channel) this.handler(m.payload ?? "");
    });
    client.on("error", (e) => {
      this.log.warn({ err: e, channel: this.channel }, "LISTEN connection failed; reconnecting");
      this.#reconnectSoon();
    });
    client.on("end", () => this.#reconnectSoon());
    await client.connect();
    await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    this.#client = client;
    this.#attempt = 0;
  }

  #reconnectSoon() {
    if (this.#stopped || this.#retry) return;
    const old = this.#client;
    this.#client = undefined;
    old?.removeAllListeners();
    old?.on("error", () => {});
    void old?.end().catch(() => {});
    const delay = Math.min(30_000, 250 * 2 ** this.#attempt++);
    this.#retry = setTimeout(async () => {
      this.#retry = undefined;
      if (this.#stopped) return;
      try {
        await this.start();
        this.log.info({ channel: this.channel }, "LISTEN connection re-established");
        this.onReconnect?.();
      } catch (e) {
        this.log.warn({ err: e, channel: this.channel }, "LISTEN reconnect failed");
        this.#reconnectSoon();
      }
    }, delay);
    this.#retry.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry);
    const c = this.#client;
    this.#client = undefined;
    if (c) {
      c.removeAllListeners();
      c.on("error", () => {});
      await c.end().catch(() => {});
    }
  }
}

/** The rows of a raw `db.execute(sql…)` result; both drivers return `{ rows }`. */
export function rowsOf<T>(result: unknown): T[] {
  return (result as { rows: T[] }).rows;
}
