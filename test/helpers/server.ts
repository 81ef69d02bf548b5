import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentNotifier } from "../../src/butler/notifier.js";
import type { ApprovalChannel } from "../../src/channels/channel.js";
import { main } from "../../src/cli/index.js";
import { type Clock, systemClock } from "../../src/clock.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { createPostgresDatabase, ENGINE, seedPgliteDir } from "./db.js";
import { SEED_POLICY_FILE } from "./policy.js";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI in-process with the given environment, capturing its output. */
export async function runCli(
  argv: string[],
  env: Record<string, string>,
  stdin?: string,
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, {
    stdout: {
      write(s: string) {
        stdout += s;
        return true;
      },
    },
    stderr: {
      write(s: string) {
        stderr += s;
        return true;
      },
    },
    env,
    stdin: (async function* () {
      if (stdin !== undefined) yield stdin;
    })(),
  });
  return { code, stdout, stderr };
}

/** A data directory, a policies directory (the seed policy unless told otherwise) and a database. */
export interface TestEnv {
  env: Record<string, string>;
  dataDir: string;
  policiesDir: string;
  cli(argv: string[], stdin?: string): Promise<CliResult>;
  writePolicy(name: string, text: string): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * On PGlite the data directory starts with the migrated template (what a first `butler serve`
 * makes, without its 3 s of initdb and migrations); `freshDatabase` leaves it empty instead, for
 * tests of that first start.
 */
export async function createTestEnv(
  opts: { policies?: Record<string, string>; env?: Record<string, string>; freshDatabase?: boolean } = {},
): Promise<TestEnv> {
  const dir = await mkdtemp(join(tmpdir(), "butler-env-"));
  const dataDir = join(dir, "data");
  const policiesDir = join(dir, "policies");
  await import("node:fs/promises").then((fs) => fs.mkdir(policiesDir));
  const policies = opts.policies ?? { "project-billing.yaml": await readFile(SEED_POLICY_FILE, "utf8") };
  for (const [name, text] of Object.entries(policies)) await writeFile(join(policiesDir, name), text);
  const pgdb = ENGINE === "postgres" ? await createPostgresDatabase() : undefined;
  const env: Record<string, string> = {
    BUTLER_DATA_DIR: dataDir,
    POLICIES_DIR: policiesDir,
    PORT: "0",
    LOG_LEVEL: "silent",
    POLICY_WATCH: "false",
    ...(pgdb ? { DATABASE_URL: pgdb.url } : {}),
    ...opts.env,
  };
  const database = loadConfig(env).database;
  if (database.kind === "pglite" && !opts.freshDatabase) await seedPgliteDir(database.dataDir);
  return {
    env,
    dataDir,
    policiesDir,
    cli: (argv, stdin) => runCli(argv, env, stdin),
    writePolicy: (name, text) => writeFile(join(policiesDir, name), text),
    async cleanup() {
      await pgdb?.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestServer extends TestEnv {
  server: RunningServer;
  url: string;
  /** Makes an agent token with `butler agents create` (through the running server's admin API). */
  agentToken(agent: string, project: string): Promise<string>;
  authorize(
    token: string | undefined,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any }>;
  /** Any call to the server, with a bearer token and a JSON body. */
  http(
    method: string,
    path: string,
    token: string | undefined,
    body?: unknown,
  ): Promise<{ status: number; body: any }>;
  /** Signs in to the dashboard with an approver's or auditor's token; the session cookie (`name=value`). */
  dashboardCookie(token: string): Promise<string>;
  /** The audit log as exported (`butler audit export`), every line or those of one type. */
  events(type?: string): Promise<Record<string, any>[]>;
  stop(): Promise<void>;
}

/** Starts the real server (startServer, as `butler serve` does) on a loopback port. */
export async function startTestServer(
  opts: {
    policies?: Record<string, string>;
    env?: Record<string, string>;
    clock?: Clock;
    notifier?: AgentNotifier;
    channels?: ApprovalChannel[];
    /** Leaves the database empty (see createTestEnv) for `beforeStart` to fill. */
    freshDatabase?: boolean;
    /** Runs on the environment before the server starts (and migrates its database). */
    beforeStart?: (t: TestEnv) => Promise<void>;
  } = {},
): Promise<TestServer> {
  const t = await createTestEnv(opts);
  await opts.beforeStart?.(t);
  const server = await startServer(loadConfig(t.env), createLogger("silent"), opts.clock ?? systemClock, {
    notifier: opts.notifier,
    channels: opts.channels,
  });
  return {
    ...t,
    server,
    url: server.url,
    async agentToken(agent, project) {
      const r = await t.cli(["agents", "create", agent, "--project", project, "--json"]);
      if (r.code !== 0) throw new Error(`agents create failed: ${r.stderr}`);
      return JSON.parse(r.stdout).token as string;
    },
    async authorize(token, body, headers = {}) {
      const res = await fetch(`${server.url}/v1/authorize`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...headers,
        },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep text */
      }
      return { status: res.status, body: parsed };
    },
    async http(method, path, token, body) {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep text */
      }
      return { status: res.status, body: parsed };
    },
    async dashboardCookie(token) {
      const res = await fetch(`${server.url}/dashboard/sign-in`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }).toString(),
        redirect: "manual",
      });
      const cookie = res.headers.get("set-cookie")?.split(";")[0];
      if (res.status !== 303 || !cookie) throw new Error(`dashboard sign-in failed: ${res.status}`);
      return cookie;
    },
    async events(type) {
      const out = await t.cli(["audit", "export"]);
      if (out.code !== 0) throw new Error(`audit export failed: ${out.stderr}`);
      return out.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, any>)
        .filter((l) => type === undefined || l.type === type);
    },
    stop: () => server.close(),
    async cleanup() {
      await server.close();
      await t.cleanup();
    },
  };
}
