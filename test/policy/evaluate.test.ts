import { describe, expect, test } from "vitest";
import { type Call, evaluate } from "../../src/policy/index.js";
import { index, seedText } from "../helpers/policy.js";

const NOW = Date.parse("2026-05-01T17:42:11Z");

const call = (over: Partial<Call>): Call => ({
  agent: "billing-reconciler-1",
  project: "project-billing",
  action: "stripe:charges:read",
  resource: "stripe.com/v1/charges",
  ...over,
});

describe("the seed policy (project-billing)", () => {
  const idx = index(seedText());

  test("Stripe is denied by default with the seed's reason", () => {
    const d = evaluate(idx, call({}), NOW);
    expect(d).toMatchObject({
      decision: "DENY",
      code: "no_service_grant",
      reason: "no policy grants stripe:* for project-billing",
    });
  });

  test("reading the ledger bucket is allowed by the aws grant", () => {
    const d = evaluate(
      idx,
      call({ action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/2026/05.csv" }),
      NOW,
    );
    expect(d).toMatchObject({ decision: "ALLOW", grantId: "g_1", revision: 1 });
  });

  test("another bucket, or a bucket whose name only starts the same, is denied", () => {
    for (const resource of [
      "arn:aws:s3:::other/x",
      "arn:aws:s3:::ledger-internal-copy/x",
      "arn:aws:s3:::ledger-internal",
    ]) {
      const d = evaluate(idx, call({ action: "aws:s3:GetObject", resource }), NOW);
      expect(d).toMatchObject({ decision: "DENY", code: "resource_not_covered", grantId: "g_1" });
      expect(d.reason).toContain(resource);
    }
  });

  test("an action the aws grant does not list is denied", () => {
    const d = evaluate(
      idx,
      call({ action: "aws:s3:DeleteObject", resource: "arn:aws:s3:::ledger-internal/x" }),
      NOW,
    );
    expect(d).toMatchObject({
      decision: "DENY",
      code: "no_action_grant",
      reason: "no policy grants aws:s3:DeleteObject for project-billing",
    });
  });

  test("git push is allowed on feature branches only", () => {
    const base = { action: "git:push", resource: "reidataai/billing-ledger" };
    expect(evaluate(idx, call({ ...base, branch: "feature/x" }), NOW)).toMatchObject({
      decision: "ALLOW",
      grantId: "g_2",
    });
    const main = evaluate(idx, call({ ...base, branch: "main" }), NOW);
    expect(main).toMatchObject({ decision: "DENY", code: "branch_not_covered", grantId: "g_2" });
    expect(main.reason).toBe(
      "grant g_2 covers git:push on reidataai/billing-ledger only for branches feature/*, not main",
    );
    expect(evaluate(idx, call({ ...base }), NOW)).toMatchObject({
      decision: "DENY",
      code: "branch_not_covered",
    });
    expect(
      evaluate(idx, call({ ...base, resource: "reidataai/other", branch: "feature/x" }), NOW),
    ).toMatchObject({
      decision: "DENY",
      code: "resource_not_covered",
    });
  });

  test("tools:Bash with rm -rf is denied by the grant's deny pattern; other commands pass", () => {
    const d = evaluate(
      idx,
      call({ action: "tools:Bash", resource: "", params: { command: "rm -rf /tmp/x" } }),
      NOW,
    );
    expect(d).toMatchObject({ decision: "DENY", code: "deny_pattern", grantId: "g_3", revision: 1 });
    expect(d.reason).toBe('command matches deny pattern "rm -rf" of grant g_3');
    expect(
      evaluate(idx, call({ action: "tools:Bash", params: { command: "ls -la /tmp" } }), NOW),
    ).toMatchObject({
      decision: "ALLOW",
      grantId: "g_3",
    });
  });

  test.each([
    "rm  -rf /",
    "sudo rm -rf /",
    'rm "-rf" /',
    "rm\t-rf /",
    "echo hi && rm -rf ~",
    "git push --force origin main",
    "git  push   --force",
  ])("deny patterns see through spacing and quoting: %j", (command) => {
    expect(evaluate(idx, call({ action: "tools:Bash", params: { command } }), NOW).decision).toBe("DENY");
  });

  test("deny patterns also look into nested and list parameters", () => {
    const d = evaluate(idx, call({ action: "tools:Bash", params: { steps: [{ run: "rm -rf /" }] } }), NOW);
    expect(d).toMatchObject({ decision: "DENY", code: "deny_pattern" });
  });

  test("deny patterns look into parameter names too, however nested", () => {
    const d = evaluate(idx, call({ action: "tools:Bash", params: { env: { "rm -rf /": "x" } } }), NOW);
    expect(d).toMatchObject({ decision: "DENY", code: "deny_pattern" });
    expect(evaluate(idx, call({ action: "tools:Bash", params: { env: { safe: "x" } } }), NOW).decision).toBe(
      "ALLOW",
    );
  });

  test("an agent that is not in the project is denied", () => {
    const d = evaluate(
      idx,
      call({ agent: "intruder", action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" }),
      NOW,
    );
    expect(d).toMatchObject({
      decision: "DENY",
      code: "unknown_agent",
      reason: "agent intruder is not in project project-billing",
    });
  });

  test("a project without a policy is denied", () => {
    expect(evaluate(idx, call({ project: "nope" }), NOW)).toMatchObject({
      decision: "DENY",
      code: "no_project",
    });
  });

  test("actions are case-sensitive", () => {
    expect(evaluate(idx, call({ action: "tools:bash", params: { command: "ls" } }), NOW).decision).toBe(
      "DENY",
    );
  });

  test("an action without a verb is denied, not matched", () => {
    expect(evaluate(idx, call({ action: "aws:" }), NOW)).toMatchObject({
      decision: "DENY",
      code: "invalid_action",
    });
    expect(evaluate(idx, call({ action: "aws" }), NOW)).toMatchObject({
      decision: "DENY",
      code: "invalid_action",
    });
  });
});

const STRIPE = `
project: support
agents:
  - name: support-bot-1
    roles: [support-tier-1]
  - name: support-bot-2
    roles: [support-tier-2]
  - reporter
grants:
  - id: g_refunds
    service: stripe
    actions: [refunds:create]
    roles: [support-tier-1]
    constraints:
      amount: { max: 5000, min: 1 }
      currency: { in: [EUR, USD] }
      receiver.account_id: { not_in: [acc_blocked] }
      memo: { pattern: "ticket-*" }
  - id: g_reads
    service: stripe
    actions: ["charges:*", "customers:read"]
  - id: g_temp
    service: stripe
    actions: [invoices:read]
    agents: [reporter]
    expires: 2026-05-01T18:00:00Z
  - id: g_s3
    service: aws
    actions: ["s3:*"]
    resources: ["arn:aws:s3:::shared/*"]
    deny: ["arn:aws:s3:::shared/secrets/*"]
`;

describe("roles, constraints, expiry and resource deny patterns", () => {
  const idx = index(STRIPE);
  const refund = (agent: string, params: Record<string, unknown>) =>
    evaluate(
      idx,
      {
        agent,
        project: "support",
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds",
        params,
      },
      NOW,
    );
  const ok = { amount: 500, currency: "EUR", receiver: { account_id: "acc_1" }, memo: "ticket-42" };

  test("refunds up to 5000 cents are allowed for support-tier-1 agents only", () => {
    expect(refund("support-bot-1", ok)).toMatchObject({ decision: "ALLOW", grantId: "g_refunds" });
    expect(refund("support-bot-1", { ...ok, amount: 5000 })).toMatchObject({ decision: "ALLOW" });
    expect(refund("support-bot-1", { ...ok, amount: "4999" })).toMatchObject({ decision: "ALLOW" });
    const tier2 = refund("support-bot-2", ok);
    expect(tier2).toMatchObject({ decision: "DENY", code: "agent_not_covered", grantId: "g_refunds" });
    expect(tier2.reason).toContain("roles support-tier-1");
  });

  test.each([
    [{ ...ok, amount: 7000 }, "amount 7000 exceeds max 5000 in grant g_refunds"],
    [{ ...ok, amount: 0 }, "amount 0 is below min 1 in grant g_refunds"],
    [{ ...ok, amount: "7000" }, "amount 7000 exceeds max 5000 in grant g_refunds"],
    [{ ...ok, amount: "5e3" }, "parameter amount must be a number in grant g_refunds"],
    [{ ...ok, amount: [1] }, "parameter amount must be a number in grant g_refunds"],
    [{ ...ok, currency: "GBP" }, "currency GBP is not in [EUR, USD] in grant g_refunds"],
    [{ ...ok, currency: ["EUR"] }, "parameter currency must be a single value in grant g_refunds"],
    [
      { ...ok, receiver: { account_id: "acc_blocked" } },
      "receiver.account_id acc_blocked is one of the refused values [acc_blocked] in grant g_refunds",
    ],
    [
      { ...ok, receiver: "acc_1" },
      "the call has no parameter receiver.account_id, which is limited in grant g_refunds",
    ],
    [{ ...ok, memo: "refund" }, 'memo refund does not match pattern "ticket-*" in grant g_refunds'],
    [
      { amount: 10, currency: "EUR", memo: "ticket-1" },
      "the call has no parameter receiver.account_id, which is limited in grant g_refunds",
    ],
  ])("constraint failure %#: %s", (params, reason) => {
    expect(refund("support-bot-1", params)).toMatchObject({
      decision: "DENY",
      code: "constraint_failed",
      reason,
    });
  });

  test("a missing params object fails closed", () => {
    expect(refund("support-bot-1", undefined as never).decision).toBe("DENY");
  });

  test("action patterns cover the verbs they match", () => {
    const d = (action: string) =>
      evaluate(idx, { agent: "reporter", project: "support", action, resource: "x" }, NOW);
    expect(d("stripe:charges:read")).toMatchObject({ decision: "ALLOW", grantId: "g_reads" });
    expect(d("stripe:charges:list")).toMatchObject({ decision: "ALLOW", grantId: "g_reads" });
    expect(d("stripe:customers:read")).toMatchObject({ decision: "ALLOW", grantId: "g_reads" });
    expect(d("stripe:customers:delete")).toMatchObject({ decision: "DENY", code: "no_action_grant" });
  });

  test("a grant stops allowing at its expiry time", () => {
    const at = (ms: number) =>
      evaluate(
        idx,
        { agent: "reporter", project: "support", action: "stripe:invoices:read", resource: "x" },
        ms,
      );
    const expiry = Date.parse("2026-05-01T18:00:00Z");
    expect(at(expiry - 1)).toMatchObject({ decision: "ALLOW", grantId: "g_temp", expiresAt: expiry });
    expect(at(expiry)).toMatchObject({
      decision: "DENY",
      code: "grant_expired",
      reason: "grant g_temp expired at 2026-05-01T18:00:00.000Z",
    });
  });

  test("a resource deny pattern wins over the grant that covers the resource", () => {
    const d = (resource: string) =>
      evaluate(idx, { agent: "reporter", project: "support", action: "aws:s3:GetObject", resource }, NOW);
    expect(d("arn:aws:s3:::shared/reports/1.csv").decision).toBe("ALLOW");
    expect(d("arn:aws:s3:::shared/secrets/key")).toMatchObject({
      decision: "DENY",
      code: "deny_pattern",
      grantId: "g_s3",
    });
  });

  test("deny wins even when another grant would allow the call", () => {
    const idx2 = index(`
project: p
agents: [a]
grants:
  - service: tools
    actions: [Bash]
  - service: tools
    actions: [Bash]
    deny: [shutdown]
`);
    const d = evaluate(
      idx2,
      { agent: "a", project: "p", action: "tools:Bash", resource: "", params: { command: "shutdown now" } },
      NOW,
    );
    expect(d).toMatchObject({ decision: "DENY", code: "deny_pattern", grantId: "g_2" });
  });

  test("the most specific reason is reported when several grants fail", () => {
    const idx2 = index(`
project: p
agents: [a]
grants:
  - service: stripe
    actions: [refunds:create]
    resources: ["other/*"]
  - service: stripe
    actions: [refunds:create]
    constraints: { amount: { max: 10 } }
`);
    const d = evaluate(
      idx2,
      { agent: "a", project: "p", action: "stripe:refunds:create", resource: "r", params: { amount: 11 } },
      NOW,
    );
    expect(d).toMatchObject({ code: "constraint_failed", grantId: "g_2" });
  });
});
