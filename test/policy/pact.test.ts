import { describe, expect, test } from "vitest";
import {
  classificationViolation,
  eventViolations,
  monthlyViolation,
  ownsResource,
  type PactDef,
  pactViolations,
} from "../../src/policy/pact.js";

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
  resources: undefined,
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

describe("pact adherence of events and data", () => {
  test("a card event at a merchant category outside the pact departs from it; an allowed one does not", () => {
    const p = pact({ allowedMerchantCategories: ["5734", "4816"], expectedCostPerCall: undefined });
    expect(eventViolations(p, { merchantCategory: "5734" })).toEqual([]);
    expect(eventViolations(p, { merchantCategory: "7995" })).toEqual([
      { rule: "allowed_merchant_categories", actual: "merchant category 7995", expected: "5734, 4816" },
    ]);
    // No list in the pact: any category is within it.
    expect(eventViolations(pact({ expectedCostPerCall: undefined }), { merchantCategory: "7995" })).toEqual(
      [],
    );
    // The amount of the event is held to the expected cost per call like a call's.
    expect(eventViolations(pact(), { amount: { amount: 5000, currency: "EUR" } })).toEqual([
      expect.objectContaining({ rule: "expected_cost_per_call", ratio: 5 }),
    ]);
  });

  test("resources: an agent's own cards, as globs", () => {
    const p = pact({ resources: ["revolut.com/cards/card_9", "revolut.com/cards/team-*"] });
    expect(ownsResource(p, "revolut.com/cards/card_9")).toBe(true);
    expect(ownsResource(p, "revolut.com/cards/team-ops")).toBe(true);
    expect(ownsResource(p, "revolut.com/cards/card_99")).toBe(false);
    expect(ownsResource(pact(), "revolut.com/cards/card_9")).toBe(false);
  });

  test("data above the expected classification departs from the pact: personal data is confidential, secrets and cards restricted", () => {
    const internal = pact({ expectedClassification: "internal" });
    expect(classificationViolation(internal, [])).toBeUndefined();
    expect(classificationViolation(internal, ["email"])).toEqual({
      rule: "expected_classification",
      actual: "confidential data (email)",
      expected: "internal",
    });
    expect(classificationViolation(internal, ["email", "api_key"])?.actual).toBe(
      "restricted data (email, api_key)",
    );
    const confidential = pact({ expectedClassification: "confidential" });
    expect(classificationViolation(confidential, ["iban"])).toBeUndefined();
    expect(classificationViolation(confidential, ["card_number"])?.actual).toBe(
      "restricted data (card_number)",
    );
    expect(classificationViolation(pact(), ["private_key"])).toBeUndefined();
  });
});

describe("monthly spend against the pact", () => {
  const month = { amount: 300000, currency: "EUR" };
  const day10 = new Date("2026-11-10T12:00:00Z"); // day 10 of 30: 100000 expected by now

  test("spend past the expectation prorated to the day is flagged by the spending that crosses the line", () => {
    expect(monthlyViolation(month, 0, 100000, day10)).toBeUndefined();
    expect(monthlyViolation(month, 100000, 100001, day10)).toEqual({
      rule: "expected_monthly_budget",
      actual: "100001 EUR this month by day 10 of 30",
      expected: "300000 EUR a month, 100000 by today",
      ratio: 1,
    });
    // Already past it: not again.
    expect(monthlyViolation(month, 120000, 130000, day10)).toBeUndefined();
    // A 31-day month, on its last day: the whole expectation.
    expect(monthlyViolation(month, 299000, 300001, new Date("2026-12-31T23:00:00Z"))?.expected).toBe(
      "300000 EUR a month, 300000 by today",
    );
  });
});
