import { describe, expect, test } from "vitest";
import { type PactDef, pactViolations } from "../../src/policy/pact.js";

const pact = (over: Partial<PactDef> = {}): PactDef => ({
  agent: "a",
  purpose: "pay for licenses",
  expectedClassification: undefined,
  intendedTools: undefined,
  intendedOperations: undefined,
  expectedCostPerCall: { amount: 1000, currency: "EUR" },
  expectedMonthlyBudget: undefined,
  costTolerance: 3,
  allowedMerchantCategories: undefined,
  onViolation: "flag",
  ...over,
});
const pay = (amount: number, currency = "EUR") => ({ action: "x:pay", amount: { amount, currency } });

describe("pact adherence", () => {
  test("a cost up to the tolerance is within the pact; above it departs, by how much", () => {
    expect(pactViolations(pact(), pay(3000))).toEqual([]);
    expect(pactViolations(pact(), pay(3001))).toEqual([
      expect.objectContaining({ rule: "expected_cost_per_call", ratio: 3 }),
    ]);
  });

  test("an amount in another currency departs (it cannot be compared); a pact expecting no cost flags any", () => {
    expect(pactViolations(pact(), pay(10, "USD"))).toEqual([
      { rule: "expected_cost_per_call", actual: "10 USD", expected: "amounts in EUR" },
    ]);
    const free = pact({ expectedCostPerCall: { amount: 0, currency: "EUR" } });
    expect(pactViolations(free, pay(1))).toEqual([
      { rule: "expected_cost_per_call", actual: "1 EUR", expected: "0 EUR (at most 3 times that)" },
    ]);
    expect(pactViolations(free, pay(0))).toEqual([]);
  });

  test("tools match by MCP tool name or action glob; groups by name", () => {
    const p = pact({ intendedTools: ["stripe_list_charges", "aws:s3:Get*"], intendedOperations: ["read"] });
    expect(
      pactViolations(p, { action: "stripe:charges:read", tool: "stripe_list_charges", group: "read" }),
    ).toEqual([]);
    expect(pactViolations(p, { action: "aws:s3:GetObject" })).toEqual([]);
    expect(pactViolations(p, { action: "aws:s3:PutObject" }).map((v) => v.rule)).toEqual(["intended_tools"]);
    expect(
      pactViolations(p, {
        action: "stripe:refunds:create",
        tool: "stripe_create_refund",
        group: "write",
      }).map((v) => v.rule),
    ).toEqual(["intended_tools", "intended_operations"]);
  });
});
