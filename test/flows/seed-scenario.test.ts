import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { verifyExport } from "../helpers/outside-verifier.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/**
 * The seed scenario's decisions, end to end: the real server on a loopback port, a token made with
 * `butler agents create`, `POST /v1/authorize`, and the audit chain checked with the CLI and with
 * an outside implementation of docs/audit.md.
 */
describe(`the seed policy through the HTTP API (${ENGINE})`, () => {
  let s: TestServer;
  let token: string;
  beforeAll(async () => {
    s = await startTestServer();
    token = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(() => s?.cleanup());

  test("stripe:charges:read is denied with the seed's reason and a request_access hint", async () => {
    const r = await s.authorize(token, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      decision: "DENY",
      reason: "no policy grants stripe:* for project-billing",
      http_status: 403,
      revision: 1,
      event_id: expect.stringMatching(/^evt_[a-z0-9]{16}$/),
    });
    expect(r.body.grant_id).toBeUndefined();
    expect(r.body.request_access).toEqual({
      method: "POST",
      url: `${s.url}/v1/access-requests`,
      body: {
        action: "stripe:charges:read",
        resource: "stripe.com/v1/charges",
        ttl: "PT24H",
        reason: expect.any(String),
        denial_event_id: r.body.event_id,
      },
      note: expect.stringContaining("project-billing"),
    });
  });

  test("reading the ledger bucket is allowed", async () => {
    const r = await s.authorize(token, {
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::ledger-internal/2026/05.csv",
    });
    expect(r.body).toMatchObject({ decision: "ALLOW", grant_id: "g_1", http_status: 200, revision: 1 });
    expect(r.body.request_access).toBeUndefined();
  });

  test("git push is allowed on feature/x and denied on main", async () => {
    const ok = await s.authorize(token, {
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: "feature/x",
    });
    expect(ok.body).toMatchObject({ decision: "ALLOW", grant_id: "g_2", http_status: 200 });
    const no = await s.authorize(token, {
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: "main",
    });
    expect(no.body).toMatchObject({ decision: "DENY", http_status: 403 });
    expect(no.body.reason).toContain("only for branches feature/*, not main");
    expect(no.body.request_access.body).toMatchObject({ branch: "main" });
  });

  test("tools:Bash rm -rf is denied, and no request can lift a deny pattern", async () => {
    const r = await s.authorize(token, { action: "tools:Bash", params: { command: "rm -rf /tmp/x" } });
    expect(r.body).toMatchObject({
      decision: "DENY",
      http_status: 403,
      reason: 'command matches deny pattern "rm -rf" of grant g_3',
    });
    expect(r.body.request_access).toBeUndefined();
  });

  test("an agent that is not in the project is denied", async () => {
    const stranger = await s.agentToken("stranger", "project-billing");
    const r = await s.authorize(stranger, {
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::ledger-internal/x",
    });
    expect(r.body).toMatchObject({
      decision: "DENY",
      reason: "agent stranger is not in project project-billing",
      http_status: 403,
    });
  });

  test("every decision is in the audit log with the seed's fields, and the chain verifies", async () => {
    const verify = await s.cli(["audit", "verify", "--json"]);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });

    const exported = await s.cli(["audit", "export", "--agent", "billing-reconciler-1"]);
    expect(exported.code).toBe(0);
    const lines = exported.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const denial = lines.find((l) => l.action === "stripe:charges:read");
    expect(denial).toMatchObject({
      agent: "billing-reconciler-1",
      project: "project-billing",
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
      decision: "DENY",
      reason: "no policy grants stripe:* for project-billing",
      http_status: 403,
      type: "gateway.denied",
      seq: expect.any(Number),
      event_id: expect.any(String),
      prev_hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      ts: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    expect(lines.filter((l) => l.type.startsWith("gateway.")).map((l) => l.decision)).toEqual([
      "DENY",
      "ALLOW",
      "ALLOW",
      "DENY",
      "DENY",
    ]);

    const all = await s.cli(["audit", "export"]);
    expect(verifyExport(all.stdout)).toEqual({ ok: true, count: all.stdout.trim().split("\n").length });
  });

  test("replay tells the agent's session in order", async () => {
    const r = await s.cli(["audit", "replay", "--agent", "billing-reconciler-1"]);
    expect(r.code).toBe(0);
    const story = r.stdout.trim().split("\n");
    expect(story[0]).toContain("token tok_");
    expect(story[1]).toMatch(
      /DENIED stripe:charges:read on stripe\.com\/v1\/charges: no policy grants stripe:\* for project-billing$/,
    );
    expect(story[2]).toMatch(
      /ALLOWED aws:s3:GetObject on arn:aws:s3:::ledger-internal\/2026\/05\.csv by grant g_1$/,
    );
  });

  test("changing one stored event makes verify fail naming its sequence number, in the CLI and an outside tool", async () => {
    const before = (await s.cli(["audit", "export"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const target = before.find((l) => l.action === "aws:s3:GetObject")!.seq as number;
    const db = s.server.services.database.db;
    await db.execute(sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`);
    await db.execute(sql`UPDATE audit_events SET decision = 'DENY' WHERE seq = ${target}`);
    await db.execute(sql`ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only`);

    const verify = await s.cli(["audit", "verify"]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`audit chain BROKEN at sequence ${target}`);
    expect(verify.stdout).toContain(`intact through sequence ${target - 1}`);
    expect(verifyExport((await s.cli(["audit", "export"])).stdout)).toEqual({ ok: false, seq: target });
  });
});
