import { access } from "node:fs/promises";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import pg from "pg";
import type { Logger } from "../logger.js";
import { TEMPLATE_FILE, unpackPgliteTemplate } from "./pglite-template.js";
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
  /**
   * Runs one statement with `$1…` parameters and returns its rows. On PostgreSQL it is a named
   * prepared statement, parsed and planned once per connection instead of on every call: for the
   * statements of the decision path (the audit log's batch).
   */
  prepared(statement: PreparedStatement, values: readonly unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

/** A statement of `Database.prepared`: one name for one text, for the life of the process. */
export interface PreparedStatement {
  readonly name: string;
  readonly text: string;
}

export type DatabaseConfig =
  | {
      kind: "postgres";
      url: string;
      poolSize: number;
      /** The longest wait for a connection or for a statement's answer (DATABASE_TIMEOUT_MS). */
      timeoutMs?: number;
    }
  | { kind: "pglite"; dataDir: string };

/** The default of DATABASE_TIMEOUT_MS. */
export const DEFAULT_DATABASE_TIMEOUT_MS = 2_000;

export async function openDatabase(cfg: DatabaseConfig, log: Logger): Promise<Database> {
  if (cfg.kind === "postgres") {
    const timeoutMs = cfg.timeoutMs ?? DEFAULT_DATABASE_TIMEOUT_MS;
    const pool = new GuardedPool(
      {
        connectionString: cfg.url,
        max: cfg.poolSize,
        connectionTimeoutMillis: timeoutMs,
        query_timeout: timeoutMs,
        keepAlive: true,
      },
      log,
    );
    try {
      const c = await pool.connect();
      c.release();
    } catch (e) {
      await pool.end();
      throw e;
    }
    return postgresDatabase(pool, cfg.url, log, timeoutMs);
  }
  const client = await PGlite.create(await prepareEmbedded(cfg.dataDir, log));
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
    prepared: async (statement, values) =>
      (await client.query<Record<string, unknown>>(statement.text, [...values])).rows,
    close: () => (client.closed ? Promise.resolve() : client.close()),
  };
}

/**
 * A client whose statement outlived `query_timeout` (a silent network partition, a server that
 * stopped answering) is in an unknown state: its connection is destroyed, which fails whatever
 * else was queued on it at once and makes the pool replace it, instead of handing out a
 * connection still waiting for an answer that may never come.
 */
class TimedClient extends pg.Client {
  override query(...args: unknown[]): never {
    const last = args.at(-1);
    if (typeof last === "function") {
      args[args.length - 1] = (err: unknown, res: unknown) => {
        if (isReadTimeout(err)) this.#abandon();
        last(err, res);
      };
    }
    const r = (super.query as (...a: unknown[]) => unknown).apply(this, args);
    if (r instanceof Promise)
      r.catch((e) => {
        if (isReadTimeout(e)) this.#abandon();
      });
    return r as never;
  }

  #abandon(): void {
    // node-postgres has no public way to drop a connection; pg-pool itself does this on a
    // connect timeout.
    (this as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  }
}

function isReadTimeout(e: unknown): boolean {
  return e instanceof Error && e.message === "Query read timeout";
}

/**
 * A pool whose lost connections cannot crash the process or leak. node-postgres emits 'error' on
 * a client whose connection fails; the pool listens only while the client is idle, so a client
 * checked out (inside a transaction, say) that loses its connection (pg_terminate_backend, a
 * restart, a network cut) would throw an unhandled 'error' event and end the process. Here every
 * client has a listener from the moment it is checked out (the pool's 'acquire', synchronous, so
 * that no error can fall between the pool letting go and the holder taking over) until it is
 * back; a client that fails while held is returned to the pool as broken at once, so that it is
 * replaced even when its holder never releases it (drizzle does not when BEGIN itself fails), and
 * the holder's own release later does nothing.
 */
export class GuardedPool extends pg.Pool {
  readonly #log: Logger;
  /** The release of each client held through `connect()` (not the pool's own `query`). */
  readonly #holders = new WeakMap<pg.ClientBase, (e: Error) => void>();
  /** Clients that failed after the pool handed them out but before their holder took them. */
  readonly #broken = new WeakMap<pg.ClientBase, Error>();

  constructor(config: pg.PoolConfig, log: Logger) {
    super({ ...config, Client: TimedClient as unknown as new () => pg.ClientBase });
    this.#log = log;
    const pool = this;
    const inUse = function (this: pg.ClientBase, e: Error) {
      pool.#failed(this, e);
    };
    this.on("acquire", (client) => client.on("error", inUse));
    // Emitted once the pool listens again itself (or has dropped the client).
    this.on("release", (_err, client) => {
      client.removeListener("error", inUse);
      this.#holders.delete(client);
      this.#broken.delete(client);
    });
  }

  #failed(client: pg.ClientBase, e: Error): void {
    this.#log.warn({ err: e }, "a PostgreSQL connection in use failed; it is replaced");
    const release = this.#holders.get(client);
    // The pool's own `query` releases its clients itself, with the error.
    if (release) release(e);
    else this.#broken.set(client, e);
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(
    callback: (
      err: Error | undefined,
      client: pg.PoolClient | undefined,
      done: (release?: unknown) => void,
    ) => void,
  ): void;
  override connect(
    callback?: (
      err: Error | undefined,
      client: pg.PoolClient | undefined,
      done: (release?: unknown) => void,
    ) => void,
  ): Promise<pg.PoolClient> | undefined {
    // The callback form is the pool's own `query`, which listens for errors itself.
    if (callback) {
      super.connect(callback);
      return undefined;
    }
    return super.connect().then((client) => this.#hold(client));
  }

  #hold(client: pg.PoolClient): pg.PoolClient {
    const release = client.release;
    let released = false;
    const done = (err?: Error | boolean) => {
      if (released) return;
      released = true;
      release(err);
    };
    client.release = done;
    const early = this.#broken.get(client);
    // Already dead: released as broken now; the holder's statements fail at once.
    if (early) done(early);
    else this.#holders.set(client, done);
    return client;
  }
}

/** Wraps a node-postgres pool. LISTEN uses its own connection, re-established when it drops. */
export function postgresDatabase(
  pool: pg.Pool,
  url: string,
  log: Logger,
  timeoutMs = DEFAULT_DATABASE_TIMEOUT_MS,
): Database {
  // An idle client that errors (server restart, connection terminated) must not crash the
  // process; the pool replaces it.
  pool.on("error", (e) => log.warn({ err: e }, "idle PostgreSQL connection failed"));
  const listeners = new Set<{ stop: () => Promise<void> }>();
  return {
    kind: "postgres",
    db: drizzlePg({ client: pool, schema }) as unknown as Db,
    async listen(channel, handler, onReconnect) {
      const l = new PgListener(url, channel, handler, onReconnect, log, timeoutMs);
      await l.start();
      listeners.add(l);
      return async () => {
        listeners.delete(l);
        await l.stop();
      };
    },
    prepared: async (statement, values) =>
      (
        await pool.query<Record<string, unknown>>({
          name: statement.name,
          text: statement.text,
          values: [...values],
        })
      ).rows,
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
    private readonly timeoutMs: number,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      keepAlive: true,
      connectionTimeoutMillis: this.timeoutMs,
      query_timeout: this.timeoutMs,
    });
    client.on("notification", (m) => {
      if (m.channel === this.channel) this.handler(m.payload ?? "");
    });
    // Until it listens, a failure is this attempt's (start() rejects), not a reason to reconnect.
    let listening = false;
    client.on("error", (e) => {
      if (!listening) return;
      this.log.warn({ err: e, channel: this.channel }, "LISTEN connection failed; reconnecting");
      this.#reconnectSoon();
    });
    client.on("end", () => {
      if (listening) this.#reconnectSoon();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    } catch (e) {
      client.removeAllListeners();
      client.on("error", () => {});
      void client.end().catch(() => {});
      throw e;
    }
    if (this.#stopped) {
      client.removeAllListeners();
      client.on("error", () => {});
      void client.end().catch(() => {});
      return;
    }
    listening = true;
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

/**
 * Says what opening the embedded database at `dir` involves, and makes a new one from the shipped
 * template (a fraction of a second) rather than by initdb (seconds). Returns the directory to open.
 */
async function prepareEmbedded(dir: string, log: Logger): Promise<string> {
  if (await holdsDatabase(dir)) {
    log.info({ dir }, "opening the embedded database");
    return dir;
  }
  const unpacked = await unpackPgliteTemplate(dir);
  if (unpacked === "unpacked") log.info({ dir }, "created the embedded database from the shipped template");
  else
    log.info(
      {
        dir,
        why: unpacked === "no template" ? `${TEMPLATE_FILE} is missing (npm run build makes it)` : unpacked,
      },
      "creating the embedded database: initdb and migrations take a few seconds, once",
    );
  return dir;
}

/** Whether `dir` holds a database already (PostgreSQL's PG_VERSION file is its first mark). */
async function holdsDatabase(dir: string): Promise<boolean> {
  try {
    await access(join(dir, "PG_VERSION"));
    return true;
  } catch {
    return false;
  }
}
