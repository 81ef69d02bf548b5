import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { TestProject } from "vitest/node";
import { pgliteDatabase } from "../../src/db/client.js";
import { migrate } from "../../src/db/migrate.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated, empty PGlite data directory (tarball): loading it takes ~0.6 s, creating one ~4 s. */
    pgliteTemplate: string;
  }
}

/**
 * Runs once per `vitest run`. Tests on PGlite start from a copy of one migrated database; tests
 * on PostgreSQL (DATABASE_URL set) each create their own database (see db.ts).
 */
export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), "butler-test-"));
  const client = await PGlite.create();
  await migrate(pgliteDatabase(client));
  const dump = await client.dumpDataDir("none");
  await client.close();
  const file = join(dir, "template.tar");
  await writeFile(file, Buffer.from(await dump.arrayBuffer()));
  project.provide("pgliteTemplate", file);
  return async () => {
    await rm(dir, { recursive: true, force: true });
  };
}
