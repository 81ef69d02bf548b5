import { describe, expect, test } from "vitest";
import { blastRadius, cardFacts, forAgent, type OperationRef } from "../../src/policy/blast-radius.js";
import { globsOverlap } from "../../src/policy/glob.js";

const OPS: OperationRef[] = [
  {
    provider: "stripe",
    operation: "list_charges",
    method: "GET",
    endpoint: "/v1/charges",
    action: "stripe:charges:read",
    resource: "stripe.com/v1/charges",
  },
  {
    provider: "stripe",
    operation: "retrieve_charge",
    method: "GET",
    endpoint: "/v1/charges/{charge}",
    action: "stripe:charges:read",
    resource: "stripe.com/v1/charges/{charge}",
  },
  {
    provider: "stripe",
    operation: "create_refund",
    method: "POST",
    endpoint: "/v1/refunds",
    action: "stripe:refunds:create",
    resource: "stripe.com/v1/refunds",
  },
];

describe("globs that overlap", () => {
  test.each([
    ["stripe.com/v1/charges/*", "stripe.com/v1/charges/*", true],
    ["stripe.com/v1/charges/ch_*", "stripe.com/v1/charges/*", true],
    ["stripe.com/v1/charges/*", "stripe.com/v1/charges", false],
    ["a?c", "abc", true],
    ["a?c", "ac", false],
    ["*x", "y*", true],
    ["a*b", "c*", false],
    ["a\\*", "a*", true],
    ["a\\*", "ab", false],
    ["arn:aws:s3:::ledger/*", "arn:aws:s3:::led*er/x", true],
  ])("%s and %s: %s", (a, b, want) => {
    expect(globsOverlap(a, b)).toBe(want);
    expect(globsOverlap(b, a)).toBe(want);
  });
});

describe("the blast radius of a proposed grant", () => {
  test("a glob names the other resources the project's calls named, and the operations its resources reach", () => {
    const r = blastRadius({
      call: {
        action: "stripe:charges:read",
        resource: "stripe.com/v1/charges/ch_1",
        branch: undefined,
        resourceGlob: "stripe.com/v1/charges/*",
      },
      agent: "billing-bot",
      ttlSeconds: 3600,
      operations: OPS,
      recent: {
        days: 30,
        resources: [
          "stripe.com/v1/charges/ch_3",
          "stripe.com/v1/charges/ch_1",
          "stripe.com/v1/charges",
          "stripe.com/v1/charges/ch_2",
          "stripe.com/v1/charges/ch_3",
        ],
      },
    });
    expect(r.operations.map((o) => o.operation)).toEqual(["retrieve_charge"]);
    expect(r.seen).toEqual({
      days: 30,
      count: 2,
      sample: ["stripe.com/v1/charges/ch_2", "stripe.com/v1/charges/ch_3"],
    });
    // The agent is never shown the other resources (other agents' calls): approvers are.
    expect(forAgent(r).seen).toBeNull();
    expect(r.facts.join(" ")).not.toContain("ch_2");
    expect(cardFacts(r)).toEqual([
      "Covers every resource matching stripe.com/v1/charges/*, not only stripe.com/v1/charges/ch_1 (the call that was denied)",
      "Also matches 2 other resources the project's calls named in the last 30 days: stripe.com/v1/charges/ch_2, stripe.com/v1/charges/ch_3",
      "Any parameters: a grant from a request sets no limits on them",
      "Opens 1 provider operation: stripe retrieve_charge (GET /v1/charges/{charge})",
      "Only for billing-bot, for PT1H after approval; then it expires on its own",
    ]);
  });

  test("an exact grant says it covers nothing else; an action no operation is decided as says so", () => {
    const exact = blastRadius({
      call: { action: "stripe:charges:read", resource: "stripe.com/v1/charges", branch: undefined },
      agent: "a",
      ttlSeconds: 86400,
      operations: OPS,
      recent: undefined,
    });
    expect(exact.facts[0]).toBe("Only stripe.com/v1/charges: no other resource");
    expect(exact.operations.map((o) => o.operation)).toEqual(["list_charges"]);
    const git = blastRadius({
      call: { action: "git:push", resource: "acme/api", branch: "main" },
      agent: "a",
      ttlSeconds: 600,
      operations: OPS,
      recent: undefined,
    });
    expect(git.facts).toContain("Only branch main");
    expect(git.facts).toContain(
      "Provider operations: none decided as git:push (it covers the calls the agent makes itself)",
    );
  });
});
