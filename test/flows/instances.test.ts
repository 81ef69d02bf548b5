import { type Task, TaskState } from "@a2a-js/sdk";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { verifyAuditChain } from "../../src/audit/verify.js";
import { systemClock } from "../../src/clock.js";
import type { Database } from "../../src/db/client.js";
import { createLogger } from "../../src/logger.js";
import { createServices, type Services } from "../../src/services.js";
import { a2aClient, ask } from "../helpers/a2a.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";
import { listenOn } from "../helpers/services.js";
import { until } from "../helpers/wait.js";

interface Instance {
  services: Services;
  app: FastifyInstance;
  url: string;
}

const ADMIN = `bta_${"x".repeat(40)}`;

async function startInstance(database: Database, policiesDir: string): Promise<Instance> {
  const log = createLogger("silent");
  let url = "";
  const services = createServices({
    config: { audit: { batchMax: 200, queueMax: 100_000, durability: "sync" }, policiesDir },
    database,
    log,
    clock: systemClock,
    actor: "test",
    publicUrl: () => url,
  });
  await services.changes.start();
  await services.policies.refreshAll();
  const served = await listenOn(services, log, ADMIN);
  url = served.url;
  return { services, app: served.app, url };
}

async function authorize(url: string, token: string, body: unknown) {
  const res = await fetch(`${url}/v1/authorize`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const TREASURY = `project: treasury
agents: [payer]
grants:
  - service: stripe
    actions: ["payment_intents:create"]
  - service: tools
    actions: [Bash]
    deny: ["rm -rf"]
trust:
  initial: 620
  rules:
    - id: low-trust
      below: 600
      actions: ["stripe:payment_intents:*"]
      constraints:
        amount: { max: 5000 }
`;

const S3 = { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" };
const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };

/**
 * Several gateway instances on one database (separate connection pools on PostgreSQL; one shared
 * embedded database on PGlite, which is single-process): changes made through one are in force on
 * the others at once, and their audit appends form one chain.
 */
describe(`several instances sharing one database (${ENGINE})`, () => {
  let t: TestDatabase;
  let env: TestEnv;
  let a: Instance;
  let b: Instance;
  let token: string;
  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({
      policies: {
        "project-billing.yaml": seedText(),
        "treasury.yaml": TREASURY,
      },
    });
    a = await startInstance(t.database, env.policiesDir);
    b = await startInstance(ENGINE === "postgres" ? await t.openAnother() : t.database, env.policiesDir);
  });
  afterAll(async () => {
    for (const i of [a, b]) {
      await i?.app.close();
      await i?.services.audit.close();
      await i?.services.changes.stop();
    }
    await t?.cleanup();
    await env?.cleanup();
  });

  test("a policy imported by one instance is in force on the other", async () => {
    await a.services.policies.importDirectory("test");
    token = (await a.services.admin.createAgentToken("billing-reconciler-1", "project-billing")).token;
    await until(
      async () => (await authorize(b.url, token, S3)).body.decision === "ALLOW",
      "instance b to load the policy",
    );
    expect((await authorize(b.url, token, S3)).body).toMatchObject({ decision: "ALLOW", revision: 1 });
  });

  test("a trust score kept by one instance is dropped when an incident on the other lowers it", async () => {
    const payer = (await a.services.admin.createAgentToken("payer", "treasury")).token;
    const pay = (url: string) =>
      authorize(url, payer, {
        action: "stripe:payment_intents:create",
        resource: "stripe.com/v1/payment_intents",
        params: { amount: 8000, currency: "eur" },
      });
    await until(async () => (await pay(b.url)).body.decision === "ALLOW", "instance b to load treasury");
    // b now keeps the score (620); an incident through a lowers it to 590, below the rule's 600.
    const told = new Promise<void>((resolve) => {
      const stop = b.services.changes.subscribe((c) => {
        if (c.kind === "trust") {
          stop();
          resolve();
        }
      });
    });
    const bash = await authorize(a.url, payer, {
      action: "tools:Bash",
      resource: "",
      params: { command: "rm -rf /" },
    });
    expect(bash.body.code).toBe("deny_pattern");
    expect((await pay(a.url)).body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    await told;
    const limited = await pay(b.url);
    expect(limited.body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    expect(limited.body.reason).toContain("trust score 590 is below 600");
  });

  test("concurrent decisions on both instances land in one verifiable chain", async () => {
    const before = await verifyAuditChain(t.database.db);
    const calls = Array.from({ length: 300 }, (_, i) =>
      authorize(i % 2 ? a.url : b.url, token, i % 3 ? S3 : STRIPE),
    );
    const results = await Promise.all(calls);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(new Set(results.map((r) => r.body.event_id)).size).toBe(300);
    const after = await verifyAuditChain(t.database.db);
    expect(after).toMatchObject({ ok: true, count: before.count + 300 });
  });

  test("a policy change through one instance reaches the other", async () => {
    await env.writePolicy(
      "project-billing.yaml",
      seedText().replace("approvers:", '  - service: stripe\n    actions: ["charges:read"]\napprovers:'),
    );
    await a.services.policies.importDirectory("test");
    await until(
      async () => (await authorize(b.url, token, STRIPE)).body.revision === 2,
      "revision 2 on instance b",
    );
    expect((await authorize(b.url, token, STRIPE)).body).toMatchObject({ decision: "ALLOW", revision: 2 });
  });

  test("a token revoked through one instance stops working on the other", async () => {
    expect((await authorize(b.url, token, S3)).status).toBe(200);
    await a.services.admin.revokeAgentTokens({ agent: "billing-reconciler-1", project: "project-billing" });
    await until(
      async () => (await authorize(b.url, token, S3)).status === 401,
      "instance b to refuse the revoked token",
    );
  });

  test("an agent subscribed to its task on one instance hears the approval made and delivered by the other", async () => {
    const agent = (await a.services.admin.createAgentToken("billing-reconciler-1", "project-billing")).token;
    const jordan = (await b.services.approverTokens.create("jordan", "test")).token;
    const call = { action: "stripe:balance:read", resource: "stripe.com/v1/balance" };
    const denied = await authorize(a.url, agent, call);
    expect(denied.body.decision).toBe("DENY");
    const client = await a2aClient(a.url, agent);
    const task = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "balance check", denial_event_id: denied.body.event_id }),
    )) as Task;
    expect(task.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const seen: string[] = [];
    const subscribed = (async () => {
      for await (const ev of client.resubscribeTask({ tenant: "", id: task.id }))
        seen.push(ev.payload?.$case ?? "");
    })();
    await until(async () => seen.length === 1, "the snapshot");
    const approve = await fetch(`${b.url}/v1/access-requests/${task.metadata!.butler.request_id}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(approve.status).toBe(200);
    // Only instance b delivers its outbox: the task moves there, and a's open stream hears it.
    await until(
      async () => (await b.services.outbox.runOnce()) >= 0 && seen.length >= 3,
      "a's stream to end",
    );
    await subscribed;
    expect(seen).toEqual(["task", "artifactUpdate", "statusUpdate"]);
    const done = await client.getTask({ tenant: "", id: task.id, historyLength: 0 });
    expect(done.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect((await authorize(a.url, agent, call)).body.decision).toBe("ALLOW");
  });

  test("approved through one instance, the agent's very next call through the other is allowed", async () => {
    const agent = (await a.services.admin.createAgentToken("billing-reconciler-1", "project-billing")).token;
    const jordan = (await a.services.approverTokens.create("jordan", "test")).token;
    // Instance b stops hearing notifications, as if they were slow or lost: it must still not deny.
    await b.services.changes.stop();
    for (let round = 0; round < 5; round++) {
      // A push to a release branch: denied by the baseline (feature/* only), medium risk, one approval.
      const call = { action: "git:push", resource: "reidataai/billing-ledger", branch: `release-${round}` };
      const denied = await authorize(b.url, agent, call);
      expect(denied.body.decision).toBe("DENY");
      const filed = await fetch(`${a.url}/v1/access-requests`, {
        method: "POST",
        headers: { authorization: `Bearer ${agent}`, "content-type": "application/json" },
        body: JSON.stringify({ ttl: "PT1H", reason: "release", denial_event_id: denied.body.event_id }),
      });
      expect(filed.status).toBe(201);
      const id = ((await filed.json()) as { access_request: { id: string } }).access_request.id;
      const approve = await fetch(`${a.url}/v1/access-requests/${id}/approve`, {
        method: "POST",
        headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
        body: "{}",
      });
      expect(((await approve.json()) as { outcome: string }).outcome).toBe("approved");
      // No waiting: the very next call, on the other instance.
      const next = await authorize(b.url, agent, call);
      expect(next.body).toMatchObject({ decision: "ALLOW", grant_id: id });
    }
  });
});
