import { fileURLToPath } from "node:url";
import type { NodePgDatabase } from "drizzle-orm/node-postgres";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import type { PgliteDatabase } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import type { Database } from "./client.js";

/** The migrations folder at the package root (the same path from src/db and from dist/db). */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations", import.meta.url));

/** An arbitrary constant: the advisory lock that serialises migrations of several instances. */
const MIGRATION_LOCK = 0x6275746c; // "butl"

/**
 * Applies every pending migration in migrations/. Idempotent. On PostgreSQL it holds an advisory
 * lock so that instances starting together do not run the same migration twice.
 */
export async function migrate(database: Database): Promise<void> {
  if (database.kind === "pglite") {
    await migratePglite(database.db as unknown as PgliteDatabase, { migrationsFolder: MIGRATIONS_DIR });
    return;
  }
  const pool = (database.db as unknown as NodePgDatabase & { $client: pg.Pool }).$client;
  // Its own connection, without the pool's statement timeout (DATABASE_TIMEOUT_MS): waiting for
  // another instance's migration, or a long DDL statement, is not an outage.
  const client = new pg.Client({ ...pool.options, query_timeout: undefined });
  client.on("error", () => {});
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      await migratePg(drizzlePg({ client }), { migrationsFolder: MIGRATIONS_DIR });
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]);
    }
  } finally {
    await client.end().catch(() => {});
  }
}
