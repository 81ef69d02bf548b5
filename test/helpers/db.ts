import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { inject } from "vitest";
import { type Database, pgliteDatabase, postgresDatabase } from "../../src/db/client.js";
import { migrate } from "../../src/db/migrate.js";
import { createLogger } from "../../src/logger.js";
import { createPostgresDatabase as createPgDatabase } from "./pg-database.js";

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

let template: Promise<Buffer> | undefined;

/**
 * The migrated, empty PGlite data directory every PGlite test database starts from: read from the
 * file global-setup names, or made once and written there (atomically, so that workers building it
 * at the same time cannot leave a torn file) for this and later runs.
 */
function pgliteTemplate(): Promise<Buffer> {
  template ??= (async () => {
    const file = inject("pgliteTemplate");
    try {
      return await readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    const client = await PGlite.create();
    await migrate(pgliteDatabase(client));
    const tar = Buffer.from(await (await client.dumpDataDir("none")).arrayBuffer());
    await client.close();
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    await writeFile(tmp, tar);
    await rename(tmp, file);
    return tar;
  })();
  return template;
}

/**
 * Writes the migrated template into `dir` as an embedded database's directory (what `butler serve`
 * would make on its first start, without initdb and migrations: about 2 s less per server).
 */
export async function seedPgliteDir(dir: string): Promise<void> {
  const tar = await pgliteTemplate();
  await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  const client = await PGlite.create(dir, { loadDataDir: new Blob([tar]) });
  await client.close();
}

/** A fresh, migrated, empty database on the engine under test. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const log = createLogger("silent");
  if (ENGINE === "pglite") {
    const tar = await pgliteTemplate();
    const client = await PGlite.create({ loadDataDir: new Blob([tar]) });
    const database = pgliteDatabase(client);
    return {
      database,
      url: undefined,
      openAnother: async () => {
        throw new Error("PGlite is single-process: share `database` instead");
      },
      cleanup: () => database.close(),
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
