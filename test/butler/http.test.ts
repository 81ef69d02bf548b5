import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const OTHER = `project: elsewhere
agents: [x]
approvers:
  - id: outsider
`;

/** Every new endpoint answers bad input with a readable 4xx, never a 500; only approvers decide. */
describe(`access-request API: authorization and bad input (${ENGINE})`, () => {
  let s: TestServer;
  let agent: string;
  let jordan: string;
  let outsider: string;
  let requestId: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "project-billing.yaml": seedText(), "elsewhere.yaml": OTHER } });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    outsider = JSON.parse((await s.cli(["approvers", "token", "outsider", "--json"])).stdout).token;
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
      ttl: "PT1H",
      reason: "reconcile",
    });
    expect(r.status).toBe(201);
    requestId = r.body.access_request.id;
  });
  afterAll(() => s?.cleanup());

  const good = { action: "stripe:charges:read", resource: "stripe.com/v1/charges", ttl: "PT1H", reason: "x" };

  test.each([
    ["no body", undefined, 400, "needs a JSON body"],
    ["a ttl of the wrong type", { ...good, ttl: true }, 400, "body.ttl: must be an ISO 8601 duration"],
    ["a bad ttl", { ...good, ttl: "tomorrow" }, 400, "ttl: 'tomorrow' is not an ISO 8601 duration"],
    [
      "a ttl above the maximum",
      { ...good, ttl: "P30D" },
      400,
      "ttl: P30D is longer than the maximum grant TTL of project-billing (P7D)",
    ],
    ["an empty reason", { ...good, reason: "   " }, 400, "body.reason: is required"],
    [
      "a huge reason",
      { ...good, reason: "x".repeat(2001) },
      400,
      "body.reason: must be at most 2000 characters",
    ],
    [
      "a malformed denial id",
      { ...good, denial_event_id: "nope" },
      400,
      "body.denial_event_id: must be an event id",
    ],
    [
      "an unknown denial id",
      { ttl: "PT1H", reason: "x", denial_event_id: "evt_0000000000000000" },
      404,
      "no denial evt_0000000000000000",
    ],
    ["a wildcard without a denial", { ...good, action: "stripe:*" }, 400, "name one exact action"],
    [
      "a resource with spaces",
      { ...good, resource: "a b" },
      400,
      "a grant cannot name a resource with whitespace",
    ],
    [
      "a never-grantable action",
      { ...good, action: "aws:iam:CreateUser" },
      403,
      "aws:iam:CreateUser is never granted in project-billing",
    ],
    ["an unknown field", { ...good, grant_to: "me" }, 400, "unknown field 'grant_to'"],
  ])("filing with %s is refused with status %i", async (_name, body, status, message) => {
    const r = await s.http("POST", "/v1/access-requests", agent, body);
    expect(r.status).toBe(status);
    expect(r.body.error.message).toContain(message);
  });

  test.each([
    [
      "POST",
      "/v1/access-requests/req_0000000000000000/approve",
      {},
      404,
      "no access request req_0000000000000000",
    ],
    ["POST", "/v1/access-requests/not-an-id/approve", {}, 400, "params.id: must be an access request id"],
    ["POST", "/v1/access-requests/REQ/approve", { ttl: "PT2H" }, 400, "params.id"],
    [
      "POST",
      "/v1/access-requests/:id/approve",
      { ttl: "forever" },
      400,
      "ttl: 'forever' is not an ISO 8601 duration",
    ],
    [
      "POST",
      "/v1/access-requests/:id/approve",
      { ttl: "PT2H" },
      400,
      "may shorten the requested PT1H, not lengthen it",
    ],
    ["POST", "/v1/access-requests/:id/approve", { ttl: [1] }, 400, "body.ttl"],
    ["POST", "/v1/access-requests/:id/deny", { reason: 5 }, 400, "body.reason: must be a string"],
    [
      "GET",
      "/v1/access-requests?status=maybe",
      undefined,
      400,
      "query.status: must be one of pending, approved, denied, expired, canceled, superseded",
    ],
    ["GET", "/v1/grants?all=yes", undefined, 400, "query.all: must be true or false"],
    ["DELETE", "/v1/grants/req_0000000000000000", undefined, 404, "no grant req_0000000000000000"],
  ])("%s %s with bad input is refused with status %i", async (method, path, body, status, message) => {
    const r = await s.http(method, path.replace(":id", requestId), jordan, body);
    expect(r.status).toBe(status);
    expect(r.body.error.message).toContain(message);
  });

  test("no token, a bad token, an agent token or an outsider's token cannot decide", async () => {
    expect((await s.http("POST", `/v1/access-requests/${requestId}/approve`, undefined, {})).status).toBe(
      401,
    );
    expect(
      (await s.http("POST", `/v1/access-requests/${requestId}/approve`, `bap_${"x".repeat(43)}`, {})).status,
    ).toBe(401);
    const byAgent = await s.http("POST", `/v1/access-requests/${requestId}/approve`, agent, { ttl: "PT1H" });
    expect(byAgent.status).toBe(403);
    const byOutsider = await s.http("POST", `/v1/access-requests/${requestId}/approve`, outsider, {});
    expect(byOutsider.status).toBe(403);
    expect(byOutsider.body.error.message).toBe("you are not an approver for project-billing");
    expect((await s.http("GET", `/v1/access-requests/${requestId}`, outsider)).status).toBe(404);
    expect((await s.http("GET", "/v1/access-requests?status=pending", outsider)).body).toEqual({
      access_requests: [],
    });
    const still = await s.http("GET", `/v1/access-requests/${requestId}`, agent);
    expect(still.body).toMatchObject({ id: requestId, status: "pending", approvals: [] });
  });

  test("an agent sees only its own requests", async () => {
    const other = await s.agentToken("invoice-generator", "project-billing");
    expect((await s.http("GET", `/v1/access-requests/${requestId}`, other)).status).toBe(404);
    expect((await s.http("POST", `/v1/access-requests/${requestId}/cancel`, other)).status).toBe(404);
    expect((await s.http("GET", "/v1/access-requests", other)).status).toBe(403);
  });

  test("the approver lists pending requests, approves for less time, and revokes through the API", async () => {
    const list = await s.http("GET", "/v1/access-requests?status=pending", jordan);
    expect(list.body.access_requests.map((r: { id: string }) => r.id)).toEqual([requestId]);
    const ok = await s.http("POST", `/v1/access-requests/${requestId}/approve`, jordan, { ttl: "PT30M" });
    expect(ok.body).toMatchObject({ outcome: "approved", access_request: { status: "approved" } });
    const grants = await s.http("GET", "/v1/grants", jordan);
    expect(grants.body.grants).toEqual([
      expect.objectContaining({ id: requestId, state: "active", approved_by: ["jordan"] }),
    ]);
    expect(grants.body.grants[0].seconds_left).toBeGreaterThan(1790);
    expect(grants.body.grants[0].seconds_left).toBeLessThanOrEqual(1800);
    expect(
      (await s.authorize(agent, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" })).body
        .decision,
    ).toBe("ALLOW");
    expect((await s.http("DELETE", `/v1/grants/${requestId}`, outsider)).status).toBe(404);
    const revoked = await s.http("DELETE", `/v1/grants/${requestId}`, jordan, { reason: "done" });
    expect(revoked.status).toBe(200);
    expect(
      (await s.authorize(agent, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" })).body
        .decision,
    ).toBe("DENY");
    const cli = await s.cli(["grants", "list", "--all"]);
    expect(cli.stdout).toMatch(new RegExp(`${requestId} {2}revoked`));
  });

  test("the agent can cancel its own pending request", async () => {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "aws:s3:DeleteObject",
      resource: "arn:aws:s3:::ledger-internal/x",
      ttl: "PT1H",
      reason: "cleanup",
    });
    const id = r.body.access_request.id;
    const c = await s.http("POST", `/v1/access-requests/${id}/cancel`, agent);
    expect(c.body.access_request.status).toBe("canceled");
    const late = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(late.status).toBe(409);
    expect(late.body.error.message).toContain("already canceled");
  });

  test("the CLI decides as a named approver and is held to the same rules", async () => {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: "main",
      ttl: "PT1H",
      reason: "hotfix",
    });
    const id = r.body.access_request.id;
    const no = await s.cli(["requests", "approve", id, "--approver", "outsider"]);
    expect(no).toMatchObject({ code: 1, stderr: "butler: you are not an approver for project-billing\n" });
    const list = await s.cli(["requests", "list", "--status", "pending"]);
    expect(list.stdout).toContain(
      `${id}  pending   project-billing  billing-reconciler-1  git:push on reidataai/billing-ledger branch main`,
    );
    const show = await s.cli(["requests", "show", id]);
    expect(show.stdout).toContain('reason (written by the agent): "hotfix"');
    expect(show.stdout).toContain('+    branches: ["main"]');
    const yes = await s.cli([
      "requests",
      "deny",
      id,
      "--approver",
      "jordan",
      "--reason",
      "use a feature branch",
    ]);
    expect(yes.code).toBe(0);
    expect((await s.http("GET", `/v1/access-requests/${id}`, agent)).body.decision).toMatchObject({
      by: "jordan",
      via: "cli",
      reason: "use a feature branch",
    });
  });
});
