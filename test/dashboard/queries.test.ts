import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { registerDashboard } from "../../src/dashboard/routes.js";
import { createFastify } from "../../src/http/fastify.js";
import { createLogger } from "../../src/logger.js";
import type { Services } from "../../src/services.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";
import { agentIdentity, startServices, stopServices } from "../helpers/services.js";

const POLICY = `project: ops
agents: [deployer]
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

/**
 * The dashboard's requests page (and its live refresh) asks the database a bounded number of
 * queries, whatever the number of pending requests: lists are read with one query per table.
 */
describe(`the requests page's queries do not grow with the requests (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let t: TestDatabase;
  let env: TestEnv;
  let s: Services;
  let app: FastifyInstance;
  let cookie: string;
  let queries = 0;

  beforeAll(async () => {
    t = await createTestDatabase();
    // Every statement the drizzle client sends, counted where it leaves (pool or PGlite client).
    const client = (t.database.db as unknown as { $client: { query: (...a: unknown[]) => unknown } }).$client;
    const query = client.query.bind(client);
    client.query = (...a: unknown[]) => {
      queries++;
      return query(...a);
    };
    env = await createTestEnv({ policies: { "ops.yaml": POLICY } });
    s = await startServices({ database: t.database, policiesDir: env.policiesDir, clock });
    await s.policies.importDirectory("test");
    app = createFastify({ log: createLogger("silent"), bodyLimitBytes: 1 << 20 });
    await registerDashboard(app, {
      db: t.database.db,
      sessions: s.dashboardSessions,
      butler: s.butler,
      projects: () => s.policies.index().projects,
      clock,
      admin: s.admin,
      verifyAudit: () => s.admin.verifyAudit(),
      secureCookies: false,
      closing: new AbortController().signal,
      log: createLogger("silent"),
    });
    const { token } = await s.admin.createApproverToken("jordan");
    const signedIn = await s.dashboardSessions.signInWithToken(token);
    cookie = `butler_session=${signedIn.cookie}`;
  });
  afterAll(async () => {
    await app?.close();
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  let filed = 0;
  async function pending(n: number) {
    for (let i = 0; i < n; i++)
      await s.butler.submit(agentIdentity("deployer", "ops"), {
        action: "aws:s3:PutObject",
        resource: `arn:aws:s3:::ops/file-${filed++}`,
        reason: "count the queries",
      });
  }

  async function pageQueries(path: string): Promise<{ queries: number; body: string }> {
    const before = queries;
    const res = await app.inject({ method: "GET", url: path, headers: { cookie } });
    expect(res.statusCode).toBe(200);
    return { queries: queries - before, body: res.body };
  }

  test("5 or 50 pending requests: the same number of queries, and every card is on the page", async () => {
    // Decided requests of both kinds on the page too, so their grants are read as well.
    const deployer = agentIdentity("deployer", "ops");
    const grant = await s.butler.submit(deployer, {
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::ops/granted",
      reason: "a grant",
    });
    if (grant.status !== "created") throw new Error(grant.status);
    await s.butler.review({ approver: "jordan", channel: "api" }, grant.request.id, "approve");
    const denied = await s.gateway.authorize(deployer, {
      action: "aws:s3:DeleteObject",
      resource: "arn:aws:s3:::ops/x",
    });
    const once = await s.butler.submit(deployer, { denial_event_id: denied.event_id, reason: "once" });
    if (once.status !== "created") throw new Error(once.status);
    await s.butler.review({ approver: "jordan", channel: "api" }, once.request.id, "approve");
    await pending(3);
    const few = await pageQueries("/dashboard");
    await pending(45);
    const many = await pageQueries("/dashboard");
    expect(many.body.match(/<article class="request /g)?.length).toBe(50);
    expect(few.body).toContain("status-approved");
    expect(few.queries).toBeGreaterThan(0);
    expect(many.queries).toBe(few.queries);
    expect(many.queries).toBeLessThanOrEqual(12);
    const fragment = await pageQueries("/dashboard/fragments/requests");
    expect(fragment.queries).toBeLessThanOrEqual(12);
  });
});
