import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const POLICY = `project: treasury
agents: [procurement-agent, other-agent]
grants:
  - service: revolut
    actions: ["payments:create"]
  - service: stripe
    actions: ["payment_intents:create"]
  - service: tools
    actions: [Bash]
    deny: ["rm -rf"]
data_protection:
  card_number: deny
pacts:
  - agent: procurement-agent
    purpose: "Pays <script>alert(1)</script> invoices"
    intended_tools: ["*"]
trust:
  initial: 620
  rules:
    - id: low-trust-small-amounts
      below: 600
      actions: ["revolut:payments:*", "stripe:payment_intents:*", "stripe:refunds:*"]
      constraints:
        amount: { max: 5000 }
require_approval:
  - id: each-refund
    actions: ["stripe:refunds:create"]
`;

/** Trust scores over HTTP: an incident lowers the score, and the next call of every financial tool is limited. */
describe(`trust-scored limits (${ENGINE})`, () => {
  let s: TestServer;
  const clock = new FakeClock(Date.parse("2026-11-02T09:00:00Z"));
  let agent: string;
  let other: string;

  beforeAll(async () => {
    s = await startTestServer({ clock, policies: { "treasury.yaml": POLICY } });
    agent = await s.agentToken("procurement-agent", "treasury");
    other = await s.agentToken("other-agent", "treasury");
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  const pay = (token: string, action: string, amount: number) =>
    s.authorize(token, { action, resource: "payments", params: { amount, currency: "EUR" } });

  test("a trust drop below a rule's threshold limits the very next call of every financial tool, naming the rule", async () => {
    expect((await pay(agent, "revolut:payments:create", 8000)).body.decision).toBe("ALLOW");
    // An incident: a deny pattern (-30), then a card number in the parameters (-50): 620 → 540.
    const bash = await s.authorize(agent, {
      action: "tools:Bash",
      resource: "",
      params: { command: "rm -rf /" },
    });
    expect(bash.body.code).toBe("deny_pattern");
    const card = await s.authorize(agent, {
      action: "tools:Bash",
      resource: "",
      params: { command: "echo 4242424242424242" },
    });
    expect(card.body.code).toBe("sensitive_data");
    const changes = await s.events("trust.changed");
    expect(changes.map((l) => [l.cause, l.before, l.after])).toEqual([
      ["deny_pattern", 620, 590],
      ["sensitive_data", 590, 540],
    ]);
    expect(changes[0]!.incident_event_id).toBe(bash.body.event_id);

    for (const action of ["revolut:payments:create", "stripe:payment_intents:create"]) {
      const limited = await pay(agent, action, 8000);
      expect(limited.body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
      expect(limited.body.reason).toBe(
        "trust rule low-trust-small-amounts of treasury: procurement-agent's trust score 540 is below 600, so amount 8000 exceeds max 5000",
      );
      expect((await pay(agent, action, 3000)).body.decision).toBe("ALLOW");
    }
    // A call a person would approve once (no grant, an approval rule) is held to the rule too: a
    // low score is not bypassed by asking for a one-shot approval.
    const refund = await s.authorize(agent, {
      action: "stripe:refunds:create",
      resource: "refunds",
      params: { amount: 8000, currency: "EUR" },
    });
    expect(refund.body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    expect(refund.body.reason).toContain("trust rule low-trust-small-amounts");
    expect(refund.body.request_access).toBeUndefined();
    const small = await s.authorize(agent, {
      action: "stripe:refunds:create",
      resource: "refunds",
      params: { amount: 3000, currency: "EUR" },
    });
    expect(small.body.code).toBe("approval_required");
    const shown = await s.cli(["agents", "show", "procurement-agent", "--project", "treasury"]);
    expect(shown.stdout).toContain("trust: 540");
    // A trust rule's own refusals are not incidents; other agents keep their score.
    expect(await s.events("trust.changed")).toHaveLength(2);
    expect((await pay(other, "revolut:payments:create", 8000)).body.decision).toBe("ALLOW");
  });

  test("the dashboard's agent page: pact (escaped), health, trust over time as SVG, links into the audit", async () => {
    const token = JSON.parse((await s.cli(["auditors", "token", "sam", "--json"])).stdout).token;
    const cookie = await s.dashboardCookie(token);
    const res = await fetch(`${s.url}/dashboard/agents/treasury/procurement-agent`, { headers: { cookie } });
    expect(res.status).toBe(200);
    const page = await res.text();
    expect(page).toContain("Pays &lt;script&gt;alert(1)&lt;/script&gt; invoices");
    expect(page).not.toContain("<script>alert(1)");
    expect(page).toMatch(/Trust <strong>540<\/strong>\/1000/);
    // Two changes: a step line from 620 down to 540 (y = 120 - score × 0.12).
    expect(page).toMatch(/<polyline points="0,46 [^"]*,46 [^"]*,49 [^"]*,49 [^"]*,55 600,55"/);
    expect(page).toContain('href="/dashboard/audit?agent=procurement-agent&amp;project=treasury"');
    const missing = await fetch(`${s.url}/dashboard/agents/treasury/nobody`, { headers: { cookie } });
    expect(missing.status).toBe(404);
  });

  test("incidents at the same moment all count, also an agent's very first ones", async () => {
    const bash = () =>
      s.authorize(other, { action: "tools:Bash", resource: "", params: { command: "rm -rf /var" } });
    const denied = await Promise.all([bash(), bash(), bash()]);
    expect(denied.map((r) => r.body.code)).toEqual(["deny_pattern", "deny_pattern", "deny_pattern"]);
    const lines = (await s.events("trust.changed")).filter((l) => l.agent === "other-agent");
    expect(lines.map((l) => [l.before, l.after])).toEqual([
      [620, 590],
      [590, 560],
      [560, 530],
    ]);
  });

  test("clean time restores the score, and the limit lifts; the recovery is audited with the next change", async () => {
    clock.advance(7 * 3600_000);
    // 540 + 7 × 10 = 610: above the threshold again.
    expect((await pay(agent, "revolut:payments:create", 8000)).body.decision).toBe("ALLOW");
    await s.authorize(agent, { action: "tools:Bash", resource: "", params: { command: "rm -rf /tmp" } });
    const changes = (await s.events("trust.changed")).filter((l) => l.agent === "procurement-agent").slice(2);
    expect(changes.map((l) => [l.cause, l.before, l.after])).toEqual([
      ["recovery", 540, 610],
      ["deny_pattern", 610, 580],
    ]);
  });
});
