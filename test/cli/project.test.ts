import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { main } from "../../src/cli/index.js";
import { acquireDataDirLock, markServerStarting } from "../../src/data-dir.js";
import { ENGINE } from "../helpers/db.js";
import {
  type CliResult,
  createTestEnv,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/server.js";

/**
 * Runs the real CLI in-process from working directory `cwd`; `onStderr` sees each line it writes
 * to stderr as it is written (to act while a command waits).
 */
async function cliIn(
  cwd: string,
  argv: string[],
  env: Record<string, string | undefined>,
  onStderr: (s: string) => void = () => {},
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, {
    stdout: {
      write: (s) => {
        stdout += s;
        return true;
      },
    },
    stderr: {
      write: (s) => {
        stderr += s;
        onStderr(s);
        return true;
      },
    },
    env,
    cwd,
  });
  return { code, stdout, stderr };
}

function without(env: Record<string, string>, ...names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !names.includes(k)));
}

describe(`the CLI finds the project's data directory (${ENGINE})`, () => {
  let t: TestEnv;
  let root: string;
  let empty: string;
  beforeAll(async () => {
    // A project as a clone has it: policies/ and the data directory .butler/ side by side.
    t = await createTestEnv();
    root = dirname(t.policiesDir);
    // (On PostgreSQL the data directory holds no database: it is made empty.)
    if (existsSync(t.dataDir)) await rename(t.dataDir, join(root, ".butler"));
    else await mkdir(join(root, ".butler"), { mode: 0o700 });
    await mkdir(join(root, "src", "deep"), { recursive: true });
    empty = await mkdtemp(join(tmpdir(), "butler-no-project-"));
  });
  afterAll(async () => {
    await t?.cleanup();
    await rm(empty, { recursive: true, force: true });
  });

  test("from a subdirectory, a command uses the project's data directory and says so", async () => {
    const env = without(t.env, "BUTLER_DATA_DIR", "POLICIES_DIR");
    const created = await cliIn(
      join(root, "src", "deep"),
      ["agents", "create", "billing-reconciler-1", "--project", "project-billing", "--json"],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr.split("\n")[0]).toBe(
      `butler: using the project in ${root} (BUTLER_DATA_DIR=${root}/.butler, POLICIES_DIR=${root}/policies, PROVIDERS_DIR=${root}/providers); set them to use another`,
    );
    const { token_id } = JSON.parse(created.stdout);
    // From the project's own directory: the same database, and nothing to say.
    const listed = await cliIn(root, ["agents", "list", "--json"], env);
    expect(listed).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(listed.stdout).tokens.map((x: { token_id: string }) => x.token_id)).toEqual([token_id]);
    // An explicit data directory is used as given, with nothing said.
    const given = await cliIn(join(root, "src"), ["requests", "list"], {
      ...env,
      BUTLER_DATA_DIR: join(root, ".butler"),
    });
    expect(given.code, given.stderr).toBe(0);
    expect(given.stderr).toBe(
      `butler: using the project in ${root} (POLICIES_DIR=${root}/policies, PROVIDERS_DIR=${root}/providers); set them to use another\n`,
    );
  });

  test("outside any project, a command names the directory it looked at and makes no database", async () => {
    const env = without(t.env, "BUTLER_DATA_DIR", "POLICIES_DIR", "DATABASE_URL");
    const r = await cliIn(empty, ["requests", "list"], env);
    expect(r).toMatchObject({
      code: 1,
      stderr: `butler: no Butler database in ${empty}/.butler (the data directory, from the default, as no directory from ${empty} upwards holds .butler or policies): run butler in the project's directory, or set BUTLER_DATA_DIR to its data directory (npm start makes one in ./.butler)\n`,
    });
    expect(existsSync(join(empty, ".butler"))).toBe(false);
    const named = await cliIn(empty, ["agents", "list", "--json"], {
      ...env,
      BUTLER_DATA_DIR: join(empty, "elsewhere"),
    });
    expect(named.code).toBe(1);
    expect(JSON.parse(named.stdout).error).toEqual({
      code: "NOT_FOUND",
      message: expect.stringContaining(
        `no Butler database in ${empty}/elsewhere (the data directory, from BUTLER_DATA_DIR)`,
      ),
    });
    expect(existsSync(join(empty, "elsewhere"))).toBe(false);
  });
});

describe("what does not mark a project or a server", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-not-a-project-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const noDatabase = (cwd: string) =>
    `butler: no Butler database in ${cwd}/.butler (the data directory, from the default, as no directory from ${cwd} upwards holds .butler or policies)`;

  test("a policies directory others can write to, or a .butler that is a symbolic link, above the working directory", async () => {
    // As another local user could leave in /tmp: neither may become the project of commands below it.
    const open = join(dir, "open");
    await mkdir(join(open, "policies"), { recursive: true });
    await import("node:fs/promises").then((fs) => fs.chmod(join(open, "policies"), 0o777));
    await mkdir(join(open, "work"));
    const linked = join(dir, "linked");
    await mkdir(join(linked, "work"), { recursive: true });
    await mkdir(join(dir, "elsewhere-data"));
    await import("node:fs/promises").then((fs) =>
      fs.symlink(join(dir, "elsewhere-data"), join(linked, ".butler")),
    );
    for (const cwd of [join(open, "work"), join(linked, "work")]) {
      const r = await cliIn(cwd, ["requests", "list"], { LOG_LEVEL: "silent" });
      expect(r.code).toBe(1);
      expect(r.stderr.startsWith(noDatabase(cwd)), r.stderr).toBe(true);
    }
  });

  test("a server.json not as butler serve writes it, or a starting mark naming pid 0, is not followed or waited for", async () => {
    const data = join(dir, "data");
    await mkdir(data, { mode: 0o700 });
    const env = { BUTLER_DATA_DIR: data, LOG_LEVEL: "silent", BUTLER_ADMIN_TOKEN: `bta_${"s".repeat(40)}` };
    // No instance id to check the answer against: the admin token must not be sent to that URL.
    await writeFile(
      join(data, "server.json"),
      JSON.stringify({ pid: process.pid, url: "http://127.0.0.1:9" }),
    );
    await writeFile(join(data, "server.starting"), JSON.stringify({ pid: 0 }));
    const r = await cliIn(dir, ["requests", "list"], env);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain("waiting for the server");
    expect(r.stderr).toContain(`no Butler database in ${data}`);
  });
});

describe(`a command run while the server starts waits for it (${ENGINE})`, () => {
  let s: TestServer;
  let dir: string;
  beforeAll(async () => {
    s = await startTestServer();
    dir = await mkdtemp(join(tmpdir(), "butler-starting-"));
  });
  afterAll(async () => {
    await s?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test.each([
    ["holds the embedded database's lock", (d: string) => acquireDataDirLock(d, "butler serve")],
    ["is still loading (marked starting, no lock yet)", (d: string) => markServerStarting(d)],
  ])("a butler serve that %s: the command waits, then goes through the server", async (how, start) => {
    if ((await s.cli(["agents", "list", "--json"])).stdout.includes("billing-reconciler-1") === false)
      await s.agentToken("billing-reconciler-1", "project-billing");
    // This process plays a `butler serve` that is starting in its data directory: not listening yet.
    const dataDir = join(dir, how.replace(/\W+/g, "-"));
    await mkdir(dataDir, { mode: 0o700 });
    const release = await start(dataDir);
    try {
      let waiting!: () => void;
      const waited = new Promise<void>((r) => {
        waiting = r;
      });
      const env = { BUTLER_DATA_DIR: dataDir, LOG_LEVEL: "silent" };
      const command = cliIn(dir, ["agents", "list", "--json"], env, (line) => {
        if (line.includes("waiting for the server")) waiting();
      });
      await waited;
      // Now it listens: what `butler serve` writes once it does (here, the real test server's).
      await writeFile(join(dataDir, "admin-token"), await readFile(join(s.dataDir, "admin-token")), {
        mode: 0o600,
      });
      await writeFile(join(dataDir, "server.json"), await readFile(join(s.dataDir, "server.json")), {
        mode: 0o600,
      });
      const r = await command;
      expect(r.stderr).toBe(`butler: waiting for the server starting in ${dataDir} (pid ${process.pid})…\n`);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).tokens).toEqual([
        expect.objectContaining({ agent: "billing-reconciler-1", project: "project-billing" }),
      ]);
      // Through the server: the command made no database of its own.
      expect(existsSync(join(dataDir, "pglite"))).toBe(false);
    } finally {
      await release();
    }
  });

  test("a server that never gets ready: the wait ends with a clear error (BUTLER_CLI_WAIT_MS)", async () => {
    const dataDir = join(dir, "never");
    await mkdir(dataDir, { mode: 0o700 });
    const release = await acquireDataDirLock(dataDir, "butler serve");
    try {
      const r = await cliIn(dir, ["requests", "list"], {
        BUTLER_DATA_DIR: dataDir,
        LOG_LEVEL: "silent",
        BUTLER_CLI_WAIT_MS: "20",
      });
      expect(r).toEqual({
        code: 1,
        stdout: "",
        stderr: `butler: waiting for the server starting in ${dataDir} (pid ${process.pid})…\nbutler: the server starting in ${dataDir} (pid ${process.pid}) was not ready within 20 ms (BUTLER_CLI_WAIT_MS); see its log, or try again when it is\n`,
      });
      expect(existsSync(join(dataDir, "pglite"))).toBe(false);
    } finally {
      await release();
    }
  });
});
