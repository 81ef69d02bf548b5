import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeChannel } from "../fakes/fake-channel.js";
import { FakeNotifier } from "../fakes/fake-notifier.js";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { verifyExport } from "../helpers/outside-verifier.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };
const DAY = 24 * 3600 * 1000;

/**
 * The seed scenario end to end over HTTP: denied, asks with the denial's event id, the Butler
 * proposes exactly one grant, jordan approves, the agent is told and retries, the grant expires
 * 24 hours later; every step is in the audit chain and the replay tells the story.
 */
describe(`the Butler loop over HTTP (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T17:42:11Z");
  const notifier = new FakeNotifier();
  const channel = new FakeChannel("dashboard");
  let s: TestServer;
  let agent: string;
  let jordan: string;
  let requestId: string;
  let denialEventId: string;

  beforeAll(async () => {
    s = await startTestServer({ clock, notifier, channels: [channel] });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    const t = await s.cli(["approvers", "token", "jordan", "--json"]);
    expect(t.code).toBe(0);
    jordan = JSON.parse(t.stdout).token;
  });
  afterAll(() => s?.cleanup());

  /** The server's own outbox worker delivers in the background; wait until it has. */
  const delivered = (what: string, check: () => boolean) =>
    until(async () => {
      await s.server.services.outbox.drain();
      return check();
    }, what);

  test("the agent is denied Stripe", async () => {
    const r = await s.authorize(agent, STRIPE);
    expect(r.body).toMatchObject({
      decision: "DENY",
      reason: "no policy grants stripe:* for project-billing",
      http_status: 403,
    });
    denialEventId = r.body.event_id;
  });

  test("it asks with the denial's event id: the Butler proposes exactly that grant", async () => {
    clock.advance(10_000);
    const r = await s.http("POST", "/v1/access-requests", agent, {
      ttl: "PT24H",
      reason: "need read-only Stripe charges for ledger reconciliation",
      denial_event_id: denialEventId,
    });
    expect(r.status).toBe(201);
    const req = r.body.access_request;
    requestId = req.id;
    expect(req).toMatchObject({
      status: "pending",
      project: "project-billing",
      agent: "billing-reconciler-1",
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
      risk_tier: "low",
      approvals_required: 1,
      requested_ttl: "PT24H",
      denial_event_id: denialEventId,
    });
    const changed = (req.proposal.diff as string).split("\n").filter((l) => /^[+-](?![+-]{2} )/.test(l));
    expect(changed).toEqual([
      `+  # access request ${requestId} by billing-reconciler-1 (proposed: expires PT24H after approval)`,
      `+  - id: ${requestId}`,
      '+    service: "stripe"',
      '+    actions: ["charges:read"]',
      '+    resources: ["stripe.com/v1/charges"]',
      '+    agents: ["billing-reconciler-1"]',
      '+    expires: "2026-05-02T17:42:21Z"',
    ]);
  });

  test("asking again returns the same pending request: one request, one card", async () => {
    const again = await s.http("POST", "/v1/access-requests", agent, {
      ttl: 86400,
      reason: "retrying",
      denial_event_id: denialEventId,
    });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({
      existing: true,
      access_request: { id: requestId, status: "pending" },
    });
    await delivered("the card to be posted", () => channel.posts.length > 0);
    expect(channel.posts.map((p) => p.card.requestId)).toEqual([requestId]);
    expect(channel.posts[0]!.approvers).toEqual(["jordan"]);
  });

  test("the agent's own token cannot approve", async () => {
    const r = await s.http("POST", `/v1/access-requests/${requestId}/approve`, agent, {});
    expect(r.status).toBe(403);
    expect(r.body.error.message).toContain("agent tokens cannot decide access requests");
  });

  test("jordan approves: the grant is applied and the agent is told", async () => {
    clock.advance(43_000);
    const r = await s.http("POST", `/v1/access-requests/${requestId}/approve`, jordan, {});
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      outcome: "approved",
      access_request: {
        status: "approved",
        grant: { id: requestId, expires_at: "2026-05-02T17:43:04.000Z" },
      },
    });
    await delivered("the agent to be told", () => notifier.of("grant_ready").length > 0);
    await delivered("the card to show the decision", () => channel.cardOf(requestId)?.status === "approved");
    expect(notifier.of("grant_ready")).toEqual([
      expect.objectContaining({
        requestId,
        agent: "billing-reconciler-1",
        grantId: requestId,
        expiresAt: "2026-05-02T17:43:04.000Z",
      }),
    ]);
    expect(channel.cardOf(requestId)).toMatchObject({
      status: "approved",
      decidedBy: "jordan",
      decidedVia: "api",
      grantExpiresAt: "2026-05-02T17:43:04.000Z",
    });
    const again = await s.http("POST", `/v1/access-requests/${requestId}/approve`, jordan, {});
    expect(again.body.outcome).toBe("unchanged");
    const deny = await s.http("POST", `/v1/access-requests/${requestId}/deny`, jordan, {
      reason: "changed my mind",
    });
    expect(deny.status).toBe(409);
    expect(deny.body.error.message).toContain("already approved by jordan");
  });

  test("the agent retries and gets through, with the grant id and who approved it", async () => {
    const r = await s.authorize(agent, STRIPE);
    expect(r.body).toMatchObject({
      decision: "ALLOW",
      grant_id: requestId,
      http_status: 200,
      approved_by: "jordan",
      expires: "2026-05-02T17:43:04.000Z",
      revision: 2,
    });
    const policy = await s.cli(["policy", "show", "project-billing"]);
    expect(policy.stdout).toContain(`  - id: ${requestId}`);
    expect(policy.stdout).toContain('    approved_by: ["jordan"]');
  });

  test("24 hours later the grant no longer allows anything, with a reason that says so", async () => {
    clock.advance(DAY);
    const r = await s.authorize(agent, STRIPE);
    expect(r.body).toMatchObject({
      decision: "DENY",
      reason: `grant ${requestId} expired at 2026-05-02T17:43:04.000Z`,
      http_status: 403,
    });
    const swept = await s.server.services.butler.sweep();
    expect(swept).toEqual({ expiredRequests: 0, expiredGrants: 1, reminded: 0 });
    await delivered("the agent to be told of the expiry", () => notifier.of("grant_expired").length > 0);
    expect(notifier.of("grant_expired").map((n) => n.grantId)).toEqual([requestId]);
    await delivered(
      "the card to say the grant expired",
      () => channel.cardOf(requestId)?.grantState === "expired",
    );
    expect((await s.authorize(agent, STRIPE)).body.decision).toBe("DENY");
  });

  test("every step is one event in a chain that verifies, and the replay tells the story in order", async () => {
    const verify = await s.cli(["audit", "verify"]);
    expect(verify.code).toBe(0);
    const exported = await s.cli(["audit", "export"]);
    expect(verifyExport(exported.stdout).ok).toBe(true);
    const types = exported.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((l) => l.agent === "billing-reconciler-1" && l.type !== "agent_token.created")
      .map((l) => l.type);
    expect(types).toEqual([
      "gateway.denied",
      "access_request.filed",
      "policy.proposed",
      "card.posted",
      "access_request.approved",
      "grant.applied",
      "agent.notified",
      "gateway.allowed",
      "gateway.denied",
      "grant.expired",
      "agent.notified",
      "gateway.denied",
    ]);
    const replay = await s.cli(["audit", "replay", "--agent", "billing-reconciler-1"]);
    const story = replay.stdout.trim().split("\n").slice(1);
    expect(story[0]).toContain(
      "DENIED stripe:charges:read on stripe.com/v1/charges: no policy grants stripe:* for project-billing",
    );
    expect(story[1]).toContain(
      `asked for stripe:charges:read on stripe.com/v1/charges for PT24H (request ${requestId}, low risk)`,
    );
    expect(story[3]).toContain("card.posted");
    expect(story[4]).toContain(`request ${requestId} approved by jordan via api for PT24H`);
    expect(story[5]).toContain(
      `grant ${requestId} applied: policy revision 2, expires 2026-05-02T17:43:04.000Z`,
    );
    expect(story[6]).toContain("agent told: grant_ready");
    expect(story[7]).toContain(`ALLOWED stripe:charges:read on stripe.com/v1/charges by grant ${requestId}`);
    expect(story[8]).toContain("expired at 2026-05-02T17:43:04.000Z");
  });
});
