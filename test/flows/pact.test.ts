import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));

const POLICY = `project: procurement
providers: [revolut]
agents: [procurement-agent, strict-agent, spender, notifier]
grants:
  - service: revolut
    actions: ["transactions:read"]
pacts:
  - agent: procurement-agent
    purpose: Reconcile card transactions (read-only)
    expected_classification: internal
    intended_tools: [revolut_list_transactions, revolut_get_transaction]
    intended_operations: [read]
  - agent: strict-agent
    purpose: Reconcile card transactions (read-only)
    intended_tools: ["revolut:transactions:*"]
    on_violation: deny
  - agent: spender
    purpose: Pay for software licenses
    intended_tools: [revolut_create_payment, revolut_list_transactions]
    expected_cost_per_call: { amount: 10000, currency: EUR }
  - agent: notifier
    purpose: Posts internal status notes
    expected_classification: internal
    intended_tools: ["*"]
approvers:
  - id: jordan
`;

const PAYMENT = { amount: 4999, currency: "EUR", receiver: { account_id: "acc_1" } };

/** The seed's pact story over HTTP: read-only Revolut tools in the pact, a create_payment call, the violation, the health. */
describe(`behavioural pacts (${ENGINE})`, () => {
  let s: TestServer;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    // Revolut "is down": a call that goes out fails; one refused before never tries.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const downPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    s = await startTestServer({
      policies: { "procurement.yaml": POLICY },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `revolut=http://127.0.0.1:${downPort}`,
        REVOLUT_ACCESS_TOKEN: "revolut-token",
        REVOLUT_WEBHOOK_SECRET: "revolut_test_secret",
      },
    });
    for (const a of ["procurement-agent", "strict-agent", "spender", "notifier"])
      tokens[a] = await s.agentToken(a, "procurement");
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  const call = (agent: string, operation: string, params: Record<string, unknown> = {}) =>
    s.http("POST", `/v1/providers/revolut/operations/${operation}`, tokens[agent], { params });
  const health = async (agent: string) =>
    JSON.parse((await s.cli(["agents", "show", agent, "--project", "procurement", "--json"])).stdout);

  test("(a) a read-only pact, then create_payment: the violation is audited with what departed, and the health drops", async () => {
    expect(await health("procurement-agent")).toMatchObject({ health: 100, violations_30d: 0 });
    // Within the pact: no violation.
    await call("procurement-agent", "list_transactions");
    expect(await s.events("pact.violated")).toHaveLength(0);

    const r = await call("procurement-agent", "create_payment", PAYMENT);
    // Flagged, not denied: the call is decided as usual (a person approves each payment).
    expect(r.body).toMatchObject({ decision: "DENY", code: "approval_required" });
    const [v] = await s.events("pact.violated");
    expect(v).toMatchObject({
      agent: "procurement-agent",
      action: "revolut:payments:create",
      mode: "flag",
      decision_event_id: r.body.event_id,
      violations: [
        {
          rule: "intended_tools",
          actual: "revolut_create_payment",
          expected: "revolut_list_transactions, revolut_get_transaction",
        },
        { rule: "intended_operations", actual: "write", expected: "read" },
      ],
    });
    const h = await health("procurement-agent");
    expect(h).toMatchObject({ health: 90, violations_30d: 1, pact: { intended_operations: ["read"] } });
    expect(h.recent_violations[0].event_id).toBe(v!.event_id);
    const text = await s.cli(["agents", "show", "procurement-agent", "--project", "procurement"]);
    expect(text.stdout).toContain("health 90/100 (1 pact violation(s) in the last 30 days)");
  });

  test("a pact that says deny refuses the call before the policy decides; service:action patterns count as tools", async () => {
    const ok = await call("strict-agent", "list_transactions");
    expect(ok.body.code).not.toBe("pact_violation");
    const r = await call("strict-agent", "create_payment", PAYMENT);
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ decision: "DENY", code: "pact_violation" });
    expect(r.body.reason).toBe(
      "strict-agent used revolut_create_payment, outside its pact's intended_tools (revolut:transactions:*); its pact says to deny such calls",
    );
    expect((await health("strict-agent")).violations_30d).toBe(1);
  });

  test("personal data or secrets above the pact's expected classification are a violation, kinds only", async () => {
    const note = (text: string) =>
      s.authorize(tokens.notifier, { action: "chat:post", resource: "status", params: { text } });
    await note("deploy finished");
    expect((await s.events("pact.violated")).filter((l) => l.agent === "notifier")).toEqual([]);
    const r = await note("ask alice.smith@example.com about DE89 3704 0044 0532 0130 00");
    const v = (await s.events("pact.violated")).filter((l) => l.agent === "notifier");
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({
      decision_event_id: r.body.event_id,
      violations: [
        { rule: "expected_classification", actual: "confidential data (email, iban)", expected: "internal" },
      ],
    });
    expect(JSON.stringify(v[0])).not.toContain("alice.smith");
    const shown = await s.cli(["agents", "pact", "show", "notifier", "--project", "procurement"]);
    expect(shown.stdout).toContain("# the pact of notifier in procurement, from the policy file");
    expect(shown.stdout).toContain("expected_classification: internal");
  });

  test("a call moving far more than the pact's expected cost per call is a violation, by how much", async () => {
    await call("spender", "create_payment", { ...PAYMENT, amount: 20000 });
    expect((await health("spender")).violations_30d).toBe(0);
    await call("spender", "create_payment", { ...PAYMENT, amount: 50000 });
    const v = (await s.events("pact.violated")).filter((l) => l.agent === "spender");
    expect(v).toHaveLength(1);
    expect(v[0]!.violations).toEqual([
      {
        rule: "expected_cost_per_call",
        actual: "50000 EUR",
        expected: "10000 EUR (at most 3 times that)",
        ratio: 5,
      },
    ]);
  });

  test("a pact set through the admin API (a person's decision) takes precedence, as audited revisions", async () => {
    const set = await s.cli(
      ["agents", "pact", "set", "spender", "--project", "procurement"],
      "purpose: Read transactions only\nintended_tools: [revolut_list_transactions]\non_violation: deny\n",
    );
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain("revision 1");
    const r = await call("spender", "create_payment", { ...PAYMENT, amount: 100 });
    expect(r.body).toMatchObject({ decision: "DENY", code: "pact_violation" });
    const [line] = await s.events("pact.set");
    expect(line).toMatchObject({ agent: "spender", revision: 1, set_by: "admin-api", before: null });
    expect(await health("spender")).toMatchObject({ pact_source: "api", pact_revision: 1 });
    const shown = await s.cli(["agents", "show", "spender", "--project", "procurement"]);
    expect(shown.stdout).toContain("pact (set through the API, revision 1): Read transactions only");
    // A pact that is not one is refused, naming what is wrong; nothing is stored.
    const bad = await s.cli(
      ["agents", "pact", "set", "spender", "--project", "procurement"],
      "purpose: x\non_violation: explode\n",
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("on_violation must be flag or deny");
    // A tool pattern a policy file would refuse is refused here too.
    const badTool = await s.cli(
      ["agents", "pact", "set", "spender", "--project", "procurement"],
      "purpose: x\nintended_tools: ['a[b']\n",
    );
    expect(badTool.stderr).toContain("intended_tools.0 is not a valid tool pattern");
    const unknown = await s.cli(
      ["agents", "pact", "set", "nobody", "--project", "procurement"],
      "purpose: x\n",
    );
    expect(unknown.stderr).toContain("agent 'nobody' is not in project procurement");
    // Cleared: the policy's pact applies again (which expects payments).
    const clear = await s.cli(["agents", "pact", "clear", "spender", "--project", "procurement"]);
    expect(clear.stdout).toContain("revision 2");
    expect((await call("spender", "create_payment", { ...PAYMENT, amount: 100 })).body.code).not.toBe(
      "pact_violation",
    );
    expect(await health("spender")).toMatchObject({ pact_source: "policy", pact_revision: null });
  });

  test("a pact naming an agent the project does not list is refused when the policy loads", async () => {
    const bad = POLICY.replace("  - agent: spender\n", "  - agent: spendr\n");
    await s.writePolicy("procurement.yaml", bad);
    const r = await s.cli(["policy", "validate", `${s.policiesDir}/procurement.yaml`]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain("pacts[2].agent: agent 'spendr' is not in agents");
    await s.writePolicy("procurement.yaml", POLICY);
  });
});
