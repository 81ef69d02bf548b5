import pg from "pg";

let counter = 0;

/**
 * Creates an empty database on the PostgreSQL server of `adminUrl`; `drop` removes it (even with
 * connections still open). Used by the tests (one database per test file) and by the benchmark.
 */
export async function createPostgresDatabase(
  adminUrl: string,
  prefix = "butler_t",
): Promise<{ url: string; drop(): Promise<void> }> {
  const base = new URL(adminUrl);
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`;
  const admin = new pg.Client({ connectionString: base.toString() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const a = new pg.Client({ connectionString: base.toString() });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
