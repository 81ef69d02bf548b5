import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { verifyAuditChain } from "../../src/audit/verify.js";
import { loadConfig } from "../../src/config.js";
import { outbox, singleUseGrants } from "../../src/db/schema.js";
import { createGateway } from "../../src/gateway/gateway-service.js";
import { createOneShots } from "../../src/grants/one-shot.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { createMetrics } from "../../src/metrics.js";
import { createOutboxWorker, enqueue } from "../../src/outbox/outbox.js";
import { TcpProxy } from "../fakes/tcp-proxy.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";
import { startServices, stopServices } from "../helpers/services.js";
import { until } from "../helpers/wait.js";

const BIN = join(process.cwd(), "bin", "butler.js");
const S3 = { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" };
const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };
const ADMIN_TOKEN = `bta_${"f".repeat(43)}`;

interface Answer {
  status: number;
  body: any;
  retryAfter: string | null;
  ms: number;
}

async function call(
  url: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* keep text */
  }
  return {
    status: res.status,
    body: parsed,
    retryAfter: res.headers.get("retry-after"),
    ms: performance.now() - started,
  };
}

/**
 * The outbox marks a delivery and writes its audit line in one transaction: a crash (or any
 * failure) between the two can no longer leave a delivery marked done with no line.
 */
describe(`outbox deliveries and their audit lines commit together (${ENGINE})`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t?.cleanup());

  const log = createLogger("silent");
  const failing = {
    append: async () => {
      throw new Error("the process died here");
    },
    appendInTx: async () => {
      throw new Error("the process died here");
    },
  };

  test("when the audit line cannot be written, the delivery is not marked done, and it is retried", async () => {
    const clock = new FakeClock("2026-05-01T00:00:00Z");
    const { db } = t.database;
    await db.transaction((tx) =>
      enqueue(
        tx,
        [
          {
            topic: "agent.notify",
            key: "k1",
            payload: {
              type: "grant_ready",
              requestId: "req_0000000000000001",
              agent: "a",
              project: "p",
              action: "stripe:charges:read",
              resource: "stripe.com/v1/charges",
              branch: undefined,
            },
          },
        ],
        clock.now(),
      ),
    );
    const handlers = {
      "agent.notify": async () => ({ auditType: "agent.notified", agent: "a", details: { n: 1 } }),
    };
    const broken = createOutboxWorker({ db, audit: failing as never, clock, log, handlers });
    await broken.runOnce();
    const [row] = await db.select().from(outbox);
    expect(row!.deliveredAt).toBeNull();
    expect(row!.lastError).toContain("the process died here");

    const audit = createAuditLog({ database: t.database, clock, log });
    const worker = createOutboxWorker({ db, audit, clock, log, handlers });
    clock.advance(120_000);
    expect(await worker.runOnce()).toBe(1);
    const [done] = await db.select().from(outbox).where(eq(outbox.id, row!.id));
    expect(done!.deliveredAt).not.toBeNull();
    const lines = (await verifyAuditChain(db)).count;
    expect(lines).toBe(1);
    await audit.close();
  });

  test("when the failure line cannot be written, the message is not marked given up", async () => {
    const clock = new FakeClock("2026-05-01T00:00:00Z");
    const { db } = t.database;
    await db.transaction((tx) =>
      enqueue(
        tx,
        [{ topic: "card.post", key: "k2", payload: { requestId: "req_0000000000000002", channel: "slack" } }],
        clock.now(),
      ),
    );
    const handlers = {
      "card.post": async () => {
        throw new Error("the platform is down");
      },
    };
    const broken = createOutboxWorker({ db, audit: failing as never, clock, log, handlers, maxAttempts: 1 });
    await broken.runOnce().catch(() => {});
    const [row] = await db.select().from(outbox).where(eq(outbox.key, "k2"));
    expect(row!.failedAt).toBeNull();
  });
});

/**
 * The database goes away (refused, or a silent partition) under a running server: every answer
 * that needs the database is a fast 503 with Retry-After (never a 500, never a decision without
 * its audit line), the process lives on, and service resumes by itself when the database is back.
 */
/**
 * A one-shot approval is spent and its ALLOW recorded in ONE transaction: if the decision's line
 * cannot be written (an outage, a crash), the approval is still there for the retry.
 */
describe(`a one-shot approval and the ALLOW that uses it commit together (${ENGINE})`, () => {
  const POLICY = `project: pay
agents: [payer]
grants:
  - service: aws
    actions: [s3:DeleteObject]
require_approval:
  - actions: ["aws:s3:DeleteObject"]
approvers:
  - id: jordan
settings:
  approvals: { high: 1 }
`;
  const DELETE = { action: "aws:s3:DeleteObject", resource: "arn:aws:s3:::scratch/x" };
  let t: TestDatabase;
  let env: TestEnv;
  let s: Awaited<ReturnType<typeof startServices>>;
  const clock = new FakeClock("2026-05-01T00:00:00Z");
  const payer = { agent: "payer", project: "pay", tokenId: "tok_test0000000000" };

  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({ policies: { "pay.yaml": POLICY } });
    s = await startServices({ database: t.database, policiesDir: env.policiesDir, clock });
    await s.policies.importDirectory("test");
  });
  afterAll(async () => {
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  test("when the decision's line cannot be written, the approval is not spent; the retry uses it", async () => {
    const denied = await s.gateway.authorize(payer, DELETE);
    expect(denied.code).toBe("approval_required");
    const filed = await s.butler.submit(payer, {
      denial_event_id: denied.event_id,
      reason: "clean up",
      params: undefined,
    });
    if (filed.status === "already_allowed") throw new Error("already allowed");
    await s.butler.review({ approver: "jordan", channel: "api" }, filed.request.id, "approve");

    // The decision's line fails to be written, wherever it is written.
    const broken = {
      append: async () => {
        throw new Error("the database went away here");
      },
      appendInTx: async (
        tx: Parameters<typeof s.audit.appendInTx>[0],
        events: Parameters<typeof s.audit.appendInTx>[1],
      ) => {
        if (events.some((e) => e.type === "gateway.allowed")) throw new Error("the database went away here");
        return s.audit.appendInTx(tx, events);
      },
    };
    const metrics = createMetrics({ auditQueueDepth: () => 0 });
    const gateway = createGateway({
      policies: s.policies,
      audit: broken as never,
      clock,
      metrics,
      publicUrl: () => "http://butler.test",
      oneShots: createOneShots({ db: t.database.db, audit: broken as never, clock }),
    });
    await expect(gateway.authorize(payer, DELETE)).rejects.toThrow("the database went away here");
    // Counted like any decision whose line could not be written.
    expect((await metrics.auditFailures.get()).values[0]?.value).toBe(1);
    const [grant] = await t.database.db.select().from(singleUseGrants);
    expect(grant!.usedAt).toBeNull();

    const retried = await s.gateway.authorize(payer, DELETE);
    expect(retried).toMatchObject({ decision: "ALLOW", one_shot: { grant_id: filed.request.id } });
  });
});

describe.skipIf(ENGINE !== "postgres")("a database outage (postgres; PGlite has no network to cut)", () => {
  let env: TestEnv;
  let proxy: TcpProxy;
  let server: RunningServer;
  let agent: string;
  let jordan: string;
  const TIMEOUT_MS = 800;
  // What the slowest answer may take: a few database steps, each bounded by the timeout.
  const BOUND_MS = 4 * TIMEOUT_MS + 1000;

  beforeAll(async () => {
    env = await createTestEnv();
    const dbUrl = new URL(env.env.DATABASE_URL!);
    proxy = await new TcpProxy(dbUrl.hostname, Number(dbUrl.port || 5432)).start();
    dbUrl.hostname = "127.0.0.1";
    dbUrl.port = String(proxy.port);
    env.env.DATABASE_URL = dbUrl.toString();
    env.env.DATABASE_TIMEOUT_MS = String(TIMEOUT_MS);
    env.env.BUTLER_ADMIN_TOKEN = ADMIN_TOKEN;
    server = await startServer(loadConfig(env.env), createLogger("silent"));
    agent = (await server.services.admin.createAgentToken("billing-reconciler-1", "project-billing")).token;
    jordan = (await server.services.admin.createApproverToken("jordan")).token;
  });
  afterAll(async () => {
    await proxy?.open();
    await server?.close();
    await proxy?.stop();
    await env?.cleanup();
  });

  let filed = 0;
  async function pending(): Promise<string> {
    const r = await call(server.url, "POST", "/v1/access-requests", agent, {
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: `release-drill-${++filed}`,
      ttl: "PT1H",
      reason: "outage drill",
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.access_request.id;
  }

  /** Every kind of call that needs the database, at once. */
  async function everything(requestId: string): Promise<[string, Answer][]> {
    const calls: [string, Promise<Answer>][] = [
      ["an allowed call", call(server.url, "POST", "/v1/authorize", agent, S3)],
      ["a denied call", call(server.url, "POST", "/v1/authorize", agent, STRIPE)],
      [
        "filing a request",
        call(server.url, "POST", "/v1/access-requests", agent, {
          action: "git:push",
          resource: "reidataai/billing-ledger",
          branch: "release-outage",
          ttl: "PT1H",
          reason: "outage",
        }),
      ],
      ["approving", call(server.url, "POST", `/v1/access-requests/${requestId}/approve`, jordan, {})],
      ["denying", call(server.url, "POST", `/v1/access-requests/${requestId}/deny`, jordan, { reason: "x" })],
      ["reading a request", call(server.url, "GET", `/v1/access-requests/${requestId}`, agent)],
      ["listing as an approver", call(server.url, "GET", "/v1/access-requests", jordan)],
      ["the admin API", call(server.url, "GET", "/v1/admin/access-requests", ADMIN_TOKEN)],
      ["verifying the audit log", call(server.url, "GET", "/v1/admin/audit/verify", ADMIN_TOKEN)],
      ["the audit export", call(server.url, "GET", "/v1/admin/audit/export", ADMIN_TOKEN)],
      ["readiness", call(server.url, "GET", "/readyz")],
      [
        "an A2A call",
        call(
          server.url,
          "POST",
          "/a2a",
          agent,
          { jsonrpc: "2.0", id: 1, method: "ListTasks", params: {} },
          { "a2a-version": "1.0" },
        ),
      ],
    ];
    return Promise.all(calls.map(async ([what, p]) => [what, await p] as [string, Answer]));
  }

  function expectFast503(answers: [string, Answer][]) {
    for (const [what, a] of answers) {
      expect(a.ms, `${what} took ${Math.round(a.ms)} ms`).toBeLessThan(BOUND_MS);
      expect(a.status, `${what}: ${JSON.stringify(a.body)}`).toBe(503);
      expect(a.retryAfter, what).toMatch(/^\d+$/);
    }
  }

  async function recovered() {
    await until(
      async () => (await call(server.url, "POST", "/v1/authorize", agent, S3)).status === 200,
      "decisions to work again",
      15_000,
    );
    const id = await pending();
    const approved = await call(server.url, "POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect((await call(server.url, "GET", "/readyz")).status).toBe(200);
    const v = await call(server.url, "GET", "/v1/admin/audit/verify", ADMIN_TOKEN);
    expect(v.body).toMatchObject({ ok: true });
  }

  test("refused: every database answer is a fast 503 with Retry-After; liveness stays up; service resumes", async () => {
    const id = await pending();
    expect((await call(server.url, "POST", "/v1/authorize", agent, S3)).status).toBe(200);
    await proxy.refuse();
    expectFast503(await everything(id));
    const health = await call(server.url, "GET", "/healthz");
    expect(health.status).toBe(200);
    expect(health.body.components.database).toBe("down");
    await proxy.open();
    await recovered();
  });

  test("a silent partition: the same, within the configured wait, and service resumes", async () => {
    const id = await pending();
    proxy.blackhole();
    expectFast503(await everything(id));
    // A second wave, once the pool's connections are known to be stuck.
    expectFast503(await everything(id));
    const health = await call(server.url, "GET", "/healthz");
    expect(health.status).toBe(200);
    expect(health.ms).toBeLessThan(BOUND_MS);
    await proxy.open();
    await recovered();
  }, 60_000);
});

interface Child {
  proc: ChildProcess;
  url: string;
  stderr(): string;
  exited: Promise<number | null>;
}

/** `butler serve` as a process, as an operator runs it; resolves once it says it is serving. */
async function serve(env: Record<string, string>): Promise<Child> {
  const proc = spawn("node", [BIN, "serve"], {
    env: { ...process.env, ...env, LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on("data", (d) => {
      err += d;
      const m = /Butler is serving at (\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
  return { proc, url, stderr: () => err, exited };
}

async function terminateBackends(admin: pg.Client, database: string): Promise<number> {
  const r = await admin.query(
    "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    [database],
  );
  return r.rows[0].n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Connections killed under the server (pg_terminate_backend) while it decides, files and
 * approves: the process must not crash on the driver's 'error' event, and must recover.
 */
describe.skipIf(ENGINE !== "postgres")("connections terminated under load (postgres)", () => {
  let env: TestEnv;
  let admin: pg.Client;
  let dbName: string;
  beforeAll(async () => {
    env = await createTestEnv({ env: { BUTLER_ADMIN_TOKEN: ADMIN_TOKEN } });
    dbName = new URL(env.env.DATABASE_URL!).pathname.slice(1);
    admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await env?.cleanup();
  });

  test("the process survives every termination, answers 503 (never 500) meanwhile, and recovers", async () => {
    const child = await serve(env.env);
    try {
      const agent = (
        await call(child.url, "POST", "/v1/admin/agents", ADMIN_TOKEN, {
          agent: "billing-reconciler-1",
          project: "project-billing",
        })
      ).body.token as string;
      const jordan = (
        await call(child.url, "POST", "/v1/admin/approvers/tokens", ADMIN_TOKEN, {
          approver: "jordan",
        })
      ).body.token as string;
      let stop = false;
      const statuses = new Map<number | string, number>();
      let n = 0;
      const count = (k: number | string) => statuses.set(k, (statuses.get(k) ?? 0) + 1);
      const worker = async () => {
        while (!stop) {
          const i = n++;
          try {
            const answers = [
              await call(child.url, "POST", "/v1/authorize", agent, i % 2 ? S3 : STRIPE),
              await call(child.url, "POST", "/v1/access-requests", agent, {
                action: "git:push",
                resource: "reidataai/billing-ledger",
                branch: `release-${i}`,
                ttl: "PT1H",
                reason: "load",
              }),
            ];
            const id = answers[1]!.body?.access_request?.id;
            if (id)
              answers.push(
                await call(
                  child.url,
                  "POST",
                  `/v1/access-requests/${id}/${i % 3 ? "approve" : "deny"}`,
                  jordan,
                  {},
                ),
              );
            for (const a of answers) count(a.status);
          } catch {
            // The server is gone: there is nothing more to load.
            count("no answer");
            if (child.proc.exitCode !== null) return;
          }
        }
      };
      const load = Promise.all(Array.from({ length: 6 }, worker));
      let killed = 0;
      for (let round = 0; round < 6; round++) {
        await sleep(250 + Math.random() * 250);
        killed += await terminateBackends(admin, dbName);
      }
      stop = true;
      await load;
      expect(killed).toBeGreaterThan(6);
      expect(child.proc.exitCode, child.stderr()).toBeNull();
      expect(child.stderr()).not.toMatch(/uncaught|unhandled 'error' event/i);
      expect(statuses.get(500) ?? 0, JSON.stringify([...statuses])).toBe(0);
      // Recovered: everything works again, through new connections.
      await until(
        async () => (await call(child.url, "POST", "/v1/authorize", agent, S3)).status === 200,
        "decisions to work again",
      );
      const filed = await call(child.url, "POST", "/v1/access-requests", agent, {
        action: "git:push",
        resource: "reidataai/billing-ledger",
        branch: "release-after",
        ttl: "PT1H",
        reason: "after",
      });
      expect(filed.status).toBe(201);
      const approved = await call(
        child.url,
        "POST",
        `/v1/access-requests/${filed.body.access_request.id}/approve`,
        jordan,
        {},
      );
      expect(approved.body.outcome).toBe("approved");
      expect((await call(child.url, "GET", "/v1/admin/audit/verify", ADMIN_TOKEN)).body.ok).toBe(true);
    } finally {
      child.proc.kill("SIGTERM");
      await child.exited;
    }
  });
});

/**
 * Two instances on one database under steady decisions and approvals; one is killed with SIGKILL
 * at random moments and restarted. Afterwards: every decision an agent was told about is in the
 * audit log, the chain verifies, every outbox message is delivered (after a final drain) with its
 * audit line, and no request was decided twice. BUTLER_FAULT_LONG=1 runs more kills.
 */
describe.skipIf(ENGINE !== "postgres")("an instance killed at random moments (postgres)", () => {
  const kills = process.env.BUTLER_FAULT_LONG === "1" ? 12 : 3;
  let envA: TestEnv;
  let envB: Record<string, string>;
  beforeAll(async () => {
    envA = await createTestEnv({ env: { BUTLER_ADMIN_TOKEN: ADMIN_TOKEN } });
    envB = { ...envA.env, BUTLER_DATA_DIR: `${envA.dataDir}-b` };
  });
  afterAll(() => envA?.cleanup());

  test(`${kills} SIGKILLs: nothing an agent was told is lost, nothing is decided twice`, async () => {
    const agent = JSON.parse(
      (await envA.cli(["agents", "create", "billing-reconciler-1", "--project", "project-billing", "--json"]))
        .stdout,
    ).token as string;
    const jordan = JSON.parse((await envA.cli(["approvers", "token", "jordan", "--json"])).stdout)
      .token as string;
    const a = await serve(envA.env);
    let b = await serve(envB);
    const told = new Set<string>();
    const approvedAnswers: string[] = [];
    const statuses = new Map<number | string, number>();
    let stop = false;
    let n = 0;
    const pick = () => (Math.random() < 0.5 ? a.url : b.url);
    const safe = async (p: Promise<Answer>): Promise<Answer | undefined> => {
      try {
        const r = await p;
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        return r;
      } catch {
        statuses.set("refused", (statuses.get("refused") ?? 0) + 1);
        return undefined;
      }
    };
    const worker = async () => {
      while (!stop) {
        const i = n++;
        const d = await safe(call(pick(), "POST", "/v1/authorize", agent, i % 2 ? S3 : STRIPE));
        // ALLOW and DENY alike: every answer that carries an event id must be in the log.
        if (typeof d?.body?.event_id === "string") told.add(d.body.event_id);
        const f = await safe(
          call(pick(), "POST", "/v1/access-requests", agent, {
            action: "git:push",
            resource: "reidataai/billing-ledger",
            branch: `release-${i}`,
            ttl: "PT1H",
            reason: "load",
          }),
        );
        const id = f?.body?.access_request?.id as string | undefined;
        if (!id) continue;
        // Two approvals race for the same request, one on each instance.
        const [x, y] = await Promise.all([
          safe(call(a.url, "POST", `/v1/access-requests/${id}/approve`, jordan, {})),
          safe(call(b.url, "POST", `/v1/access-requests/${id}/approve`, jordan, {})),
        ]);
        for (const r of [x, y]) if (r?.body?.outcome === "approved") approvedAnswers.push(id);
      }
    };
    const load = Promise.all(Array.from({ length: 4 }, worker));
    try {
      for (let k = 0; k < kills; k++) {
        await sleep(300 + Math.random() * 900);
        b.proc.kill("SIGKILL");
        await b.exited;
        b = await serve(envB);
      }
      await sleep(500);
    } finally {
      stop = true;
      await load;
    }
    a.proc.kill("SIGTERM");
    b.proc.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    await b.exited;
    expect(told.size).toBeGreaterThan(20);
    expect(statuses.get(500) ?? 0, JSON.stringify([...statuses])).toBe(0);

    // The final drain: an instance whose clock is past every claim's back-off delivers the rest.
    const database = await (async () => {
      const { openDatabase } = await import("../../src/db/client.js");
      return openDatabase(
        { kind: "postgres", url: envA.env.DATABASE_URL!, poolSize: 4 },
        createLogger("silent"),
      );
    })();
    const later = new FakeClock(Date.now() + 10 * 60_000);
    const services = await startServices({ database, policiesDir: envA.policiesDir, clock: later });
    try {
      while ((await services.outbox.runOnce()) > 0) {}
      const db = database.db;
      const rows = await db.select().from(outbox);
      expect(rows.filter((r) => r.deliveredAt === null)).toEqual([]);
      const client = (database.db as unknown as { $client: pg.Pool }).$client;
      const q = async (text: string, values: unknown[] = []) => (await client.query(text, values)).rows;
      const found = new Set(
        (await q("SELECT event_id FROM audit_events WHERE event_id = ANY($1)", [[...told]])).map(
          (r) => r.event_id,
        ),
      );
      expect([...told].filter((e) => !found.has(e))).toEqual([]);
      expect((await verifyAuditChain(db)).ok).toBe(true);
      // Every delivered notification has its line (one transaction), and only one.
      const notified = await q(
        "SELECT (details->>'outbox_id')::bigint AS id, count(*)::int AS n FROM audit_events WHERE type = 'agent.notified' GROUP BY 1",
      );
      const byOutbox = new Map(notified.map((r) => [Number(r.id), r.n]));
      const notifications = rows.filter((r) => r.topic === "agent.notify");
      // The load really decided and notified (so the checks above and below saw something).
      expect(notifications.length).toBeGreaterThan(0);
      expect(approvedAnswers.length).toBeGreaterThan(0);
      for (const r of notifications) expect(byOutbox.get(r.id), `outbox ${r.id}`).toBe(1);
      // Nothing decided twice.
      const decided = await q(
        "SELECT details->>'request_id' AS id, count(*)::int AS n FROM audit_events WHERE type IN ('access_request.approved', 'access_request.denied') GROUP BY 1 HAVING count(*) > 1",
      );
      expect(decided).toEqual([]);
      const approved = new Set(
        (
          await q(
            "SELECT details->>'request_id' AS id FROM audit_events WHERE type = 'access_request.approved'",
          )
        ).map((r) => r.id),
      );
      expect(approvedAnswers.filter((id) => !approved.has(id))).toEqual([]);
      expect(new Set(approvedAnswers).size).toBe(approvedAnswers.length);
    } finally {
      await stopServices(services);
      await database.close();
    }
  }, 120_000);
});
