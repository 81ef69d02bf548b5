import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { readLines } from "../../src/audit/audit-log.js";
import { verifyAuditChain } from "../../src/audit/verify.js";
import type { AuditDurability } from "../../src/config.js";
import { loadConfig } from "../../src/config.js";
import { openDatabase } from "../../src/db/client.js";
import { createLogger } from "../../src/logger.js";
import { ENGINE } from "../helpers/db.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";

/**
 * AUDIT_DURABILITY with a real `butler serve` killed with SIGKILL under steady decisions: whatever
 * the mode, the chain verifies from the genesis to its head, and every answer an agent received
 * has its line: an answer is sent only after PostgreSQL has committed it (the asynchronous modes
 * skip only the disk flush, whose loss needs a crash of the database server, not of Butler). What
 * was in flight at the kill is either a whole line at the end of the chain or absent.
 */

const BIN = join(process.cwd(), "bin", "butler.js");
const S3 = { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" };
const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };
const WORKERS = 6;
const ANSWERS_BEFORE_KILL = 150;

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

/** The modes this engine runs: the asynchronous ones need PostgreSQL (the config refuses them on PGlite). */
const modes: AuditDurability[] = ENGINE === "postgres" ? ["sync", "async-deny", "async"] : ["sync"];

describe(`a killed server under AUDIT_DURABILITY (${ENGINE})`, () => {
  test.each(modes)(
    "%s: reported at start and in /healthz; after SIGKILL the chain verifies and every answer has its line",
    async (mode) => {
      env = await createTestEnv({ env: { AUDIT_DURABILITY: mode } });
      const token = JSON.parse(
        (
          await env.cli([
            "agents",
            "create",
            "billing-reconciler-1",
            "--project",
            "project-billing",
            "--json",
          ])
        ).stdout,
      ).token as string;
      const proc = spawn("node", [BIN, "serve"], {
        env: { ...process.env, ...env.env, LOG_LEVEL: "info", LOG_FORMAT: "json" },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      const waiting = new Set<() => void>();
      const exited = new Promise<void>((r) => proc.on("exit", () => r()));
      proc.stderr!.on("data", (d) => {
        stderr += d;
        for (const w of [...waiting]) w();
      });
      /** Resolves with the first match of `re` in stderr, once there is one (rejects if the process ends first). */
      const printed = (re: RegExp) =>
        new Promise<RegExpExecArray>((resolve, reject) => {
          const check = () => {
            const m = re.exec(stderr);
            if (!m) return;
            waiting.delete(check);
            resolve(m);
          };
          waiting.add(check);
          void exited.then(() => reject(new Error(`serve exited: ${stderr}`)));
          check();
        });
      const url = (await printed(/Butler is serving at (\S+) \(/))[1]!;
      try {
        // The start report: the serving line and the log lines say the mode, and what it means (the
        // log is written apart from the serving line, so it is awaited too).
        expect(stderr).toContain(`(database: ${ENGINE}, audit durability: ${mode}, `);
        const line = async (msg: RegExp) =>
          JSON.parse((await printed(new RegExp(`^(\\{.*"msg":"${msg.source}.*)\\n`, "m")))[1]!) as {
            msg: string;
            audit_durability?: string;
            level: number;
          };
        expect((await line(/butler is serving/)).audit_durability).toBe(mode);
        const explained = await line(new RegExp(`audit durability ${mode}:`));
        expect(explained.msg).toContain(
          mode === "sync"
            ? "every answer is sent only after its audit line is committed and flushed to disk"
            : "a crash of the database server (not of Butler) can lose the newest such lines",
        );
        expect(explained.level).toBe(mode === "sync" ? 30 : 40);
        const health = (await (await fetch(`${url}/healthz`)).json()) as Record<string, unknown>;
        expect(health).toMatchObject({ status: "ok", audit: { durability: mode } });

        // Steady decisions (ALLOW and DENY) from several agents' connections, then the kill.
        const answered = new Map<string, string>();
        let killed = false;
        let kill!: () => void;
        const killNow = new Promise<void>((r) => {
          kill = r;
        });
        const worker = async (w: number) => {
          for (let i = 0; !killed; i++) {
            try {
              const res = await fetch(`${url}/v1/authorize`, {
                method: "POST",
                headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
                body: JSON.stringify((i + w) % 2 ? S3 : STRIPE),
              });
              const body = (await res.json()) as { event_id?: string; decision?: string };
              if (killed) return;
              expect([200, 403]).toContain(res.status);
              answered.set(body.event_id!, body.decision!);
              if (answered.size === ANSWERS_BEFORE_KILL) kill();
            } catch (e) {
              if (killed) return; // the connection died with the server
              throw e;
            }
          }
        };
        const load = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
        await killNow;
        // From here on a call may fail (the server is gone) and an answer may be cut off: either is
        // counted as unanswered.
        killed = true;
        proc.kill("SIGKILL");
        await exited;
        await load;
        const decisions = [...answered.values()];
        expect(decisions).toContain("ALLOW");
        expect(decisions).toContain("DENY");

        // The database as the killed server left it (PGlite recovers its own files on opening).
        const database = await openDatabase(loadConfig(env.env).database, createLogger("silent"));
        try {
          expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true });
          const lines = [];
          for await (const l of readLines(database.db)) lines.push(l);
          expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i + 1));
          const decided = lines.filter((l) => l.type === "gateway.allowed" || l.type === "gateway.denied");
          const stored = new Map(decided.map((l) => [l.event_id, l.decision]));
          // Every answer an agent received is in the log, with the decision it was told.
          const missing = [...answered].filter(([id, decision]) => stored.get(id) !== decision);
          expect(missing).toEqual([]);
          // Lines of calls in flight at the kill (committed, answer not received): at most one per
          // connection, each a whole line inside the verified chain.
          expect(decided.filter((l) => !answered.has(l.event_id)).length).toBeLessThanOrEqual(WORKERS);
        } finally {
          await database.close();
        }
      } finally {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill("SIGKILL");
          await exited;
        }
      }
    },
    120_000,
  );
});
