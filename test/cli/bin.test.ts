import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";

const run = promisify(execFile);
const BIN = join(process.cwd(), "bin", "butler.js");

/** The installed `butler` command (bin/butler.js over the build in dist/), as a user runs it. */
describe(`the butler command as a process (${ENGINE})`, () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv();
  });
  afterAll(() => t?.cleanup());

  test("policy validate exits non-zero on a broken policy and prints the location", async () => {
    await t.writePolicy("typo.yaml", "project: x\nagents: []\ngrant: []\n");
    const r = await run("node", [BIN, "policy", "validate", t.policiesDir]).catch((e) => e);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/typo\.yaml:3:1: grant: unknown key 'grant'; did you mean 'grants'\?/);
    const { rm } = await import("node:fs/promises");
    await rm(join(t.policiesDir, "typo.yaml"));
  });

  test("serve starts, answers, lets the CLI work through it, and stops cleanly on SIGTERM", async () => {
    const child = spawn("node", [BIN, "serve"], {
      env: { ...process.env, ...t.env, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const waiting = new Set<() => void>();
    child.stderr.on("data", (d) => {
      stderr += d;
      for (const w of [...waiting]) w();
    });
    /** Resolves once stderr holds `text` (rejects if the process ends first). */
    const printed = (text: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!stderr.includes(text)) return;
          waiting.delete(check);
          resolve();
        };
        waiting.add(check);
        child.once("exit", (code) => reject(new Error(`butler serve exited (${code}): ${stderr}`)));
        check();
      });
    let signIns = 0;
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      // "Butler is serving" is printed once it listens, after server.json is written.
      await printed("Butler is serving at ");
      const info = JSON.parse(await readFile(join(t.dataDir, "server.json"), "utf8"));
      expect(info.pid).toBe(child.pid);
      expect(await (await fetch(`${info.url}/healthz`)).json()).toMatchObject({
        status: "ok",
        instance: info.instance,
        components: { database: "up" },
      });
      expect(stderr).toContain(`Butler is serving at ${info.url}`);
      // Serving: the mark that held CLI commands back while it started is gone.
      expect(existsSync(join(t.dataDir, "server.starting"))).toBe(false);

      // The embedded default prints a one-time dashboard sign-in link for the first approver.
      if (ENGINE === "pglite") {
        await printed("Dashboard:");
        const link = /Dashboard: open (\S+) to sign in as jordan \(one time, until /.exec(stderr);
        expect(link?.[1]).toMatch(new RegExp(`^${info.url}/dashboard/sign-in\\?code=[A-Za-z0-9_-]{32}$`));
        const code = new URL(link![1]!).searchParams.get("code")!;
        const use = () =>
          fetch(`${info.url}/dashboard/sign-in/link`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ code }).toString(),
            redirect: "manual",
          });
        const first = await use();
        expect(first.status).toBe(303);
        expect(first.headers.get("set-cookie")).toMatch(
          /^butler_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict/,
        );
        expect((await use()).status).toBe(401);
        signIns = 2; // the link's creation and the sign-in
      } else expect(stderr).not.toContain("Dashboard:");

      const created = await run(
        "node",
        [BIN, "agents", "create", "billing-reconciler-1", "--project", "project-billing", "--json"],
        { env: { ...process.env, ...t.env } },
      );
      const token = JSON.parse(created.stdout).token as string;
      const res = await fetch(`${info.url}/v1/authorize`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ action: "stripe:charges:read", resource: "stripe.com/v1/charges" }),
      });
      expect(await res.json()).toMatchObject({
        decision: "DENY",
        reason: "no policy grants stripe:* for project-billing",
      });
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    expect(existsSync(join(t.dataDir, "server.json"))).toBe(false);
    expect(existsSync(join(t.dataDir, "butler.lock"))).toBe(false);
    expect(existsSync(join(t.dataDir, "server.starting"))).toBe(false);
    const verify = await run("node", [BIN, "audit", "verify"], { env: { ...process.env, ...t.env } });
    expect(verify.stdout).toMatch(new RegExp(`^audit chain verified: ${3 + signIns} events`));
  });
});
