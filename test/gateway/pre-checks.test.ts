import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const POLICY = `project: project-dp
agents: [bot-1, bot-2]
grants:
  - service: crm
    actions: ["contacts:*"]
  - service: payments
    actions: [charge]
require_approval:
  - actions: ["payments:charge"]
    when:
      iban: { pattern: "DE*" }
data_protection:
  email: flag
  iban: redact
  card_number: deny
  private_key: deny
rate_limits:
  - id: per-agent
    max_calls: 3
    window: PT1H
    agents: [bot-2]
  - id: deletes
    max_calls: 1
    window: PT1M
    actions: ["crm:contacts:delete"]
    per: action
approvers:
  - id: jordan
settings:
  approvals: { low: 1, medium: 1, high: 1 }
`;

const EMAIL = "alice.payer@acme-corp.com";
const IBAN = "DE89370400440532013000";
const CARD = "4242424242424242";

/** Personal data and secrets in parameters, and rate limits, over HTTP: the steps before the policy decides. */
describe(`data protection and rate limits (${ENGINE})`, () => {
  let s: TestServer;
  let bot1: string;
  let bot2: string;
  let jordan: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "project-dp.yaml": POLICY } });
    bot1 = await s.agentToken("bot-1", "project-dp");
    bot2 = await s.agentToken("bot-2", "project-dp");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  const line = async (eventId: string) => (await s.events()).find((l) => l.event_id === eventId)!;

  test("flag: the call is decided as usual, and its audit line says what was found where, never the value", async () => {
    const r = await s.authorize(bot1, {
      action: "crm:contacts:update",
      resource: "contact/17",
      params: { notify: EMAIL, name: "Alice" },
    });
    expect(r.body).toMatchObject({ decision: "ALLOW" });
    const l = await line(r.body.event_id);
    expect(l.sensitive).toEqual([{ kind: "email", path: "params.notify", mode: "flag" }]);
    expect(JSON.stringify(await s.events())).not.toContain(EMAIL);
  });

  test("deny: a card number in the parameters is refused before the policy, with no way to ask for it", async () => {
    const r = await s.authorize(bot1, {
      action: "crm:contacts:update",
      resource: "contact/17",
      params: { note: `card ${CARD.replace(/(\d{4})/g, "$1 ").trim()}` },
    });
    expect(r.body).toMatchObject({ decision: "DENY", code: "sensitive_data", http_status: 403 });
    expect(r.body.reason).toBe(
      "params.note holds a card number, which project-dp does not allow in calls (data_protection: card_number: deny)",
    );
    expect(r.body.request_access).toBeUndefined();
    const l = await line(r.body.event_id);
    expect(l).toMatchObject({ type: "gateway.denied", deny_code: "sensitive_data" });
    expect(JSON.stringify(l)).not.toContain("4242");
    // In the resource too.
    const inResource = await s.authorize(bot1, { action: "crm:contacts:update", resource: `card/${CARD}` });
    expect(inResource.body).toMatchObject({ decision: "DENY", code: "sensitive_data" });
    expect(inResource.body.reason).toContain("resource holds a card number");
    // A Luhn-invalid number of the same shape is not a card number.
    const other = await s.authorize(bot1, {
      action: "crm:contacts:update",
      resource: "contact/17",
      params: { note: "ref 4242424242424241" },
    });
    expect(other.body.decision).toBe("ALLOW");
  });

  test("redact: people never see the value (request, proposal); the approval still covers exactly the call", async () => {
    const call = { action: "payments:charge", resource: "customer/9", params: { iban: IBAN, amount: 500 } };
    const denied = await s.authorize(bot1, call);
    expect(denied.body).toMatchObject({ decision: "DENY", code: "approval_required" });
    expect((await line(denied.body.event_id)).sensitive).toEqual([
      { kind: "iban", path: "params.iban", mode: "redact" },
    ]);
    const filed = await s.http("POST", "/v1/access-requests", bot1, {
      denial_event_id: denied.body.event_id,
      params: call.params,
      reason: "monthly invoice",
    });
    expect(filed.status, JSON.stringify(filed.body)).toBe(201);
    const id = filed.body.access_request.id as string;
    // The agent's own answer shows the stored request: redacted too.
    expect(JSON.stringify(filed.body)).not.toContain(IBAN);
    const view = await s.http("GET", `/v1/access-requests/${id}`, jordan);
    expect(view.status).toBe(200);
    expect(view.body.call.params).toEqual({ iban: "[redacted:iban]", amount: 500 });
    expect(JSON.stringify(view.body)).not.toContain(IBAN);
    expect(view.body.proposal.diff).toContain("[redacted:iban]");
    // The approval rule's reason quotes the parameter it matched: redacted in the audit log too.
    expect(JSON.stringify(await s.events())).not.toContain(IBAN);
    const approved = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(approved.status).toBe(200);
    const allowed = await s.authorize(bot1, call);
    expect(allowed.body).toMatchObject({ decision: "ALLOW", one_shot: { grant_id: id } });
  });

  test("a rate limit per agent: the call past it is refused with 429 and when to try again; others go on", async () => {
    for (let i = 0; i < 3; i++) {
      const ok = await s.authorize(bot2, { action: "crm:contacts:read", resource: `contact/${i}` });
      expect(ok.body.decision, JSON.stringify(ok.body)).toBe("ALLOW");
    }
    const over = await s.authorize(bot2, { action: "crm:contacts:read", resource: "contact/4" });
    expect(over.body).toMatchObject({ decision: "DENY", code: "rate_limited", http_status: 429 });
    expect(over.body.retry_after_seconds).toBeGreaterThan(0);
    expect(over.body.reason).toMatch(
      /^rate limit per-agent of project-dp: at most 3 call\(s\) in PT1H for bot-2; try again in \d+ s$/,
    );
    const l = await line(over.body.event_id);
    expect(l).toMatchObject({ deny_code: "rate_limited", rate_limit: "per-agent", http_status: 429 });
    expect(l.retry_after_seconds).toBeGreaterThan(0);
    // Another agent is not limited by bot-2's calls.
    expect(
      (await s.authorize(bot1, { action: "crm:contacts:read", resource: "contact/4" })).body.decision,
    ).toBe("ALLOW");
  });

  test("a rate limit per action counts each matching action on its own; a refused call is not counted", async () => {
    const del = { action: "crm:contacts:delete", resource: "contact/1" };
    expect((await s.authorize(bot1, del)).body.decision).toBe("ALLOW");
    expect((await s.authorize(bot1, del)).body.code).toBe("rate_limited");
    expect((await s.authorize(bot1, del)).body.code).toBe("rate_limited");
    // Actions the limit does not name are not counted by it.
    expect(
      (await s.authorize(bot1, { action: "crm:contacts:update", resource: "contact/1" })).body.decision,
    ).toBe("ALLOW");
  });
});

describe("the pact's expected classification on parameters too large to search", () => {
  test("parameters that cannot all be searched are a violation, not a pass (fail closed)", async () => {
    const { compilePolicies, parsePolicyFile } = await import("../../src/policy/index.js");
    const { preChecks } = await import("../../src/gateway/pre-checks.js");
    const parsed = parsePolicyFile({
      file: "p.yaml",
      text: `project: p
agents: [a]
pacts:
  - agent: a
    purpose: internal notes
    expected_classification: internal
    on_violation: deny
`,
    });
    if (!parsed.ok) throw new Error("fixture policy does not parse");
    const project = compilePolicies([{ document: parsed.value, revision: 1 }]).projects.get("p")!;
    const call = (params: Record<string, unknown>) =>
      preChecks(project, undefined, { agent: "a", project: "p", action: "chat:post", params }, new Date());
    expect((await call({ text: "hello" })).deny).toBeUndefined();
    const padded = await call({ text: IBAN, pad: Array.from({ length: 10_001 }, () => "x") });
    expect(padded.deny?.code).toBe("pact_violation");
    expect(padded.violations?.list).toEqual([
      {
        rule: "expected_classification",
        actual: "parameters too large or too deeply nested to check",
        expected: "internal",
      },
    ]);
  });
});
