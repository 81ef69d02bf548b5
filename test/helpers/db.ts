import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import { inject } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type Database, pgliteDatabase, postgresDatabase } from "../../src/db/client.js";
import { MIGRATIONS_DIR, migrate } from "../../src/db/migrate.js";
import { unpackPgliteTemplate } from "../../src/db/pglite-template.js";
import { createLogger } from "../../src/logger.js";
import { createPostgresDatabase as createPgDatabase } from "./pg-database.js";

const run = promisify(execFile);

/** Which engine this run tests: PostgreSQL when DATABASE_URL is set (as CI's second pass does). */
export const ENGINE: "postgres" | "pglite" = process.env.DATABASE_URL ? "postgres" : "pglite";

export interface TestDatabase {
  database: Database;
  /** Set on PostgreSQL: a URL to this test's own database (to open more pools, like more instances). */
  url: string | undefined;
  /** Opens another handle on the same database, as a second server instance would (PostgreSQL only). */
  openAnother(): Promise<Database>;
  cleanup(): Promise<void>;
}

let template: Promise<string> | undefined;

/**
 * The migrated, empty PGlite data directory every PGlite test database starts from: kept in the
 * directory global-setup names, made once (in a directory of its own, then renamed into place, so
 * that workers making it at the same time cannot leave a half-made one) for this and later runs.
 */
function pgliteTemplate(): Promise<string> {
  template ??= (async () => {
    const dir = inject("pgliteTemplate");
    if (await isDir(dir)) return dir;
    await mkdir(dirname(dir), { recursive: true });
    const making = await mkdtemp(`${dir}.making-`);
    // From the build's template when there is one (migrate adds what it lacks), else by initdb.
    await unpackPgliteTemplate(join(making, "db"));
    const client = await PGlite.create(join(making, "db"));
    await migrate(pgliteDatabase(client));
    await client.close();
    try {
      await rename(join(making, "db"), dir);
    } catch (e) {
      // Another worker made it first: theirs is as good as ours.
      if (!["ENOTEMPTY", "EEXIST"].includes((e as NodeJS.ErrnoException).code ?? "")) throw e;
    }
    await rm(making, { recursive: true, force: true });
    return dir;
  })();
  return template;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/**
 * Writes the migrated template into `dir` as an embedded database's directory (what `butler serve`
 * would make on its first start, without initdb and migrations). `cp -a` copies the 40 MB in tens
 * of milliseconds, where fs.cp takes ten times longer.
 */
export async function seedPgliteDir(dir: string): Promise<void> {
  const from = await pgliteTemplate();
  await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  await run("cp", ["-a", from, dir]);
}

/** A fresh, migrated, empty database on the engine under test. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const log = createLogger("silent");
  if (ENGINE === "pglite") {
    const home = await mkdtemp(join(tmpdir(), "butler-db-"));
    await seedPgliteDir(join(home, "db"));
    const database = pgliteDatabase(await PGlite.create(join(home, "db")));
    return {
      database,
      url: undefined,
      openAnother: async () => {
        throw new Error("PGlite is single-process: share `database` instead");
      },
      async cleanup() {
        await database.close();
        await rm(home, { recursive: true, force: true });
      },
    };
  }
  const { url: dbUrl, drop } = await createPostgresDatabase();
  const url = new URL(dbUrl);
  const open = () =>
    postgresDatabase(new pg.Pool({ connectionString: url.toString(), max: 10 }), url.toString(), log);
  const database = open();
  await migrate(database);
  const others: Database[] = [];
  return {
    database,
    url: url.toString(),
    async openAnother() {
      const d = open();
      others.push(d);
      return d;
    },
    async cleanup() {
      await Promise.all([database, ...others].map((d) => d.close()));
      await drop();
    },
  };
}

/** Creates an empty database on the PostgreSQL server of DATABASE_URL; `drop` removes it. */
export function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  return createPgDatabase(process.env.DATABASE_URL!);
}

/**
 * Migrates the database of `env` (a TestEnv's: PostgreSQL when it names DATABASE_URL, else the
 * embedded database of its data directory, made by initdb) only as far as migration `lastTag`, as
 * an earlier version of the Butler left it; `use` then runs on it. The server started on it later
 * applies the rest.
 */
export async function atMigration(
  env: Record<string, string>,
  lastTag: string,
  use: (query: (text: string, params?: unknown[]) => Promise<unknown>) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "butler-migrations-"));
  try {
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    const journalFile = join(dir, "meta", "_journal.json");
    const journal = JSON.parse(await readFile(journalFile, "utf8")) as { entries: { tag: string }[] };
    const last = journal.entries.findIndex((e) => e.tag === lastTag);
    if (last < 0) throw new Error(`no migration ${lastTag}`);
    journal.entries = journal.entries.slice(0, last + 1);
    await writeFile(journalFile, JSON.stringify(journal));
    const database = loadConfig(env).database;
    if (database.kind === "pglite") {
      await mkdir(dirname(database.dataDir), { recursive: true, mode: 0o700 });
      const client = await PGlite.create(database.dataDir);
      try {
        await migratePglite(drizzlePglite(client), { migrationsFolder: dir });
        await use((text, params) => client.query(text, params));
      } finally {
        await client.close();
      }
      return;
    }
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await migratePg(drizzlePg({ client }), { migrationsFolder: dir });
      await use((text, params) => client.query(text, params));
    } finally {
      await client.end();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
