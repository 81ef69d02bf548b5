import { chmod, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { createPostgresDatabase, ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";

/** Every path under `dir` (the directory itself included) with its permission bits. */
async function modes(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const visit = async (p: string) => {
    const st = await lstat(p);
    out.set(relative(dir, p) || ".", st.mode & 0o777);
    if (st.isDirectory()) for (const e of await readdir(p)) await visit(join(p, e));
  };
  await visit(dir);
  return out;
}

const openToOthers = (m: Map<string, number>) =>
  [...m].filter(([, mode]) => (mode & 0o077) !== 0).map(([p, mode]) => `${p} ${mode.toString(8)}`);

/**
 * Issue 12 item 11: another user of the machine must not read the admin token, the push key or the
 * embedded database (which holds every grant and audit event), nor write to them. PGlite creates
 * its files 0666 whatever the umask; directories made before this fix were left as they were.
 */
describe(`the data directory is owner-only (${ENGINE})`, () => {
  let dir: string;
  let dataDir: string;
  let env: Record<string, string>;
  let dropDb: (() => Promise<void>) | undefined;
  let server: RunningServer | undefined;
  const logLines: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-perms-"));
    dataDir = join(dir, "data");
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "project-billing.yaml"), seedText());
    if (ENGINE === "postgres") {
      const created = await createPostgresDatabase();
      dropDb = created.drop;
      env = { DATABASE_URL: created.url };
    }
    env = {
      ...env,
      BUTLER_DATA_DIR: dataDir,
      POLICIES_DIR: join(dir, "policies"),
      PORT: "0",
      LOG_LEVEL: "silent",
      POLICY_WATCH: "false",
    };
  });
  afterAll(async () => {
    await server?.close();
    await dropDb?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const start = async () => {
    await server?.close();
    server = await startServer(
      loadConfig(env),
      createLogger("info", { write: (s: string) => void logLines.push(s) }),
    );
  };
  const warnings = () => logLines.filter((l) => l.includes("other users could read or write"));

  test("a new data directory, its files and the embedded database are created owner-only", async () => {
    await start();
    const running = await modes(dataDir);
    expect(openToOthers(running)).toEqual([]);
    expect(running.get(".")).toBe(0o700);
    expect(running.get("admin-token")).toBe(0o600);
    expect(running.get("server.json")).toBe(0o600);
    if (ENGINE === "pglite") {
      expect(running.get("push-key")).toBe(0o600);
      // The whole database tree, not a sample.
      expect([...running.keys()].filter((p) => p.startsWith("pglite")).length).toBeGreaterThan(100);
    }
    await server!.close();
    expect(openToOthers(await modes(dataDir))).toEqual([]);
    // Nothing was loose, so nothing was said.
    expect(warnings()).toEqual([]);
  });

  test("a pre-existing loose data directory is tightened at start, with one warning; other files are left alone", async () => {
    // As an older version (or a careless copy) left it: everything readable, some writable.
    for (const [p, mode] of await modes(dataDir))
      await chmod(join(dataDir, p), (mode & 0o700) | (p === "." || mode & 0o100 ? 0o077 : 0o066));
    await writeFile(join(dataDir, "notes.txt"), "not Butler's");
    await chmod(join(dataDir, "notes.txt"), 0o644);
    expect(openToOthers(await modes(dataDir)).length).toBeGreaterThan(2);

    await start();
    const after = await modes(dataDir);
    after.delete("notes.txt");
    expect(openToOthers(after)).toEqual([]);
    expect((await modes(dataDir)).get("notes.txt")).toBe(0o644);
    expect(warnings()).toHaveLength(1);
    expect(JSON.parse(warnings()[0]!)).toMatchObject({ level: 40, dir: dataDir });
    await server!.close();
    server = undefined;
    const closed = await modes(dataDir);
    closed.delete("notes.txt");
    expect(openToOthers(closed)).toEqual([]);
  });
});
