import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /**
     * Where a migrated, empty PGlite data directory is kept between runs: copying it takes tens of
     * milliseconds, creating one ~4 s. Made by the first test that needs it (see db.ts), so that
     * pure tests never pay for it.
     */
    pgliteTemplate: string;
  }
}

/**
 * Runs once per `vitest run`: names the PGlite template for this version of the migrations and of
 * PGlite (a new migration gets a new template). Tests on PostgreSQL (DATABASE_URL set) each create
 * their own database (see db.ts).
 */
export default async function setup(project: TestProject) {
  // Every temporary directory of this run (data directories, embedded databases, Chromium's
  // profile, child processes' files) under one directory of its own, in memory where the system
  // has a tmpfs: PGlite writes and syncs its files there without waiting for a disk, and the
  // whole directory goes at the end of the run, with anything a test left behind. Workers and the
  // processes tests start inherit TMPDIR.
  const base = (await isWritableDir("/dev/shm")) ? "/dev/shm" : tmpdir();
  const runDir = await mkdtemp(join(base, "butler-test-"));
  process.env.TMPDIR = runDir;
  const hash = createHash("sha256");
  const dir = join(process.cwd(), "migrations");
  for (const entry of (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort()) {
    hash.update(entry).update(await readFile(entry));
  }
  const pglite = JSON.parse(
    await readFile(join(process.cwd(), "node_modules/@electric-sql/pglite/package.json"), "utf8"),
  ) as { version: string };
  hash.update(pglite.version);
  // The code that applies them too: a change there makes a new template.
  hash.update(await readFile(join(process.cwd(), "src/db/migrate.ts")));
  // Kept in the project's own cache (not a shared /tmp path another user could fill first).
  const cache = join(process.cwd(), "node_modules/.cache/butler");
  await mkdir(cache, { recursive: true });
  project.provide("pgliteTemplate", join(cache, `pglite-template-${hash.digest("hex").slice(0, 16)}`));
  return () => rm(runDir, { recursive: true, force: true });
}

async function isWritableDir(path: string): Promise<boolean> {
  try {
    await access(path, constants.W_OK);
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
