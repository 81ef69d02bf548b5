import { describe, expect, test } from "vitest";
import { approvalRequired, parsePolicyFile } from "../../src/policy/index.js";
import { index } from "../helpers/policy.js";

const POLICY = `project: pay
agents:
  - name: payer
    roles: [finance]
  - name: intern
grants:
  - service: stripe
    actions: ["*"]
require_approval:
  - id: large
    actions: ["stripe:payment_intents:create", "stripe:charges:*"]
    when:
      amount: { min: 50001 }
      currency: { in: [eur] }
  - id: interns
    actions: ["stripe:refunds:*"]
    agents: [intern]
`;

const project = index(POLICY).projects.get("pay")!;
const need = (agent: string, action: string, params?: Record<string, unknown>) =>
  approvalRequired(project, { agent, project: "pay", action, resource: "stripe.com/v1/x", params });

describe("require_approval", () => {
  test("a rule covers a call when an action matches, the agent is covered and every `when` check is met", () => {
    expect(need("payer", "stripe:payment_intents:create", { amount: 60000, currency: "eur" })).toEqual({
      rule: "large",
      reason:
        "a person must approve each stripe:payment_intents:create call with amount 60000, currency eur (require_approval large of pay)",
    });
    expect(need("payer", "stripe:charges:create", { amount: "50001", currency: "eur" })?.rule).toBe("large");
    // One check not met: the rule does not apply.
    expect(
      need("payer", "stripe:payment_intents:create", { amount: 50000, currency: "eur" }),
    ).toBeUndefined();
    expect(
      need("payer", "stripe:payment_intents:create", { amount: 60000, currency: "usd" }),
    ).toBeUndefined();
    expect(need("payer", "stripe:customers:read", { amount: 60000, currency: "eur" })).toBeUndefined();
  });

  test("leaving a checked parameter out does not avoid the rule (fail closed)", () => {
    expect(need("payer", "stripe:payment_intents:create", { currency: "eur" })?.reason).toContain(
      "with amount not given, currency eur",
    );
    expect(need("payer", "stripe:payment_intents:create")?.rule).toBe("large");
    expect(
      need("payer", "stripe:payment_intents:create", { amount: { nested: 1 }, currency: "eur" })?.rule,
    ).toBe("large");
  });

  test("agents and roles limit a rule", () => {
    expect(need("intern", "stripe:refunds:create")?.rule).toBe("interns");
    expect(need("payer", "stripe:refunds:create")).toBeUndefined();
  });

  test("mistakes are reported where they are", () => {
    const problems = (text: string) => {
      const r = parsePolicyFile({
        file: "p.yaml",
        text: `project: p\nagents: [a]\nrequire_approval:\n${text}`,
      });
      return r.ok ? [] : r.error.map((i) => `${i.line}:${i.col} ${i.message}`);
    };
    expect(problems('  - actions: ["stripe:x"]\n    whne: {}\n')).toEqual([
      expect.stringMatching(/^5:5 unknown key 'whne'; did you mean 'when'\?/),
    ]);
    expect(problems('  - actions: ["refunds"]\n    agents: [nobody]\n    when:\n      amount: {}\n')).toEqual(
      [
        expect.stringMatching(/^4:15 'refunds' must be a full action with its service/),
        expect.stringMatching(/^5:14 agent 'nobody' is not listed under agents/),
        expect.stringMatching(/^7:15 names no check/),
      ],
    );
  });
});
