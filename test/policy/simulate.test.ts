import { describe, expect, test } from "vitest";
import { compileProject, parsePolicyFile } from "../../src/policy/index.js";
import { type CallGroup, simulate, spansChange } from "../../src/policy/simulate.js";

const compiled = (text: string) => {
  const r = parsePolicyFile({ file: "p.yaml", text });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return compileProject({ document: r.value, revision: 1 });
};

const BEFORE = `project: p
agents: [bot, other]
grants:
  - service: stripe
    actions: [refunds:create]
    resources: ["stripe.com/v1/refunds/*"]
    constraints:
      amount: { max: 100 }
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ledger/*"]
`;

const T = Date.parse("2026-11-20T10:00:00Z");
let seq = 0;
const group = (over: Partial<CallGroup>): CallGroup => ({
  agent: "bot",
  action: "aws:s3:GetObject",
  resource: "arn:aws:s3:::ledger/a",
  branch: undefined,
  decision: "DENY",
  code: "resource_not_covered",
  count: 1,
  lastSeq: ++seq,
  lastTs: T,
  firstTs: T,
  ...over,
});

describe("deciding past calls again under a proposed policy", () => {
  test("what the change allows and denies is counted per call; refusals for parameters are taken from the record or left undetermined", () => {
    const after = compiled(
      BEFORE.replace("max: 100", "max: 1000").replace('"arn:aws:s3:::ledger/*"', '"arn:aws:s3:::reports/*"'),
    );
    const history = [
      // Allowed before, denied now: the ledger is no longer readable.
      group({ decision: "ALLOW", code: undefined, count: 4 }),
      // Denied before, allowed now.
      group({ resource: "arn:aws:s3:::reports/q1", count: 2 }),
      // A refund refused for its amount: the new cap may or may not let it through: undetermined.
      group({
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds/r1",
        code: "constraint_failed",
        count: 3,
      }),
      // A refusal the policy does not make (a rate limit) is not decided again.
      group({ resource: "arn:aws:s3:::reports/q2", code: "rate_limited", count: 5 }),
      // Unchanged.
      group({
        action: "aws:s3:PutObject",
        resource: "arn:aws:s3:::ledger/a",
        code: "no_action_grant",
        count: 7,
      }),
    ];
    const sim = simulate(compiled(BEFORE), after, history);
    expect(sim.calls).toBe(21);
    expect(sim.allowedCalls).toBe(2);
    expect(sim.allowed.map((g) => g.resource)).toEqual(["arn:aws:s3:::reports/q1"]);
    expect(sim.deniedCalls).toBe(4);
    expect(sim.denied.map((g) => [g.resource, g.now])).toEqual([["arn:aws:s3:::ledger/a", "DENY"]]);
    expect(sim.undetermined).toBe(3 + 5);
    expect(sim.refusalsLifted).toBe(0);
  });

  test("a change that drops a constraint lifts the recorded constraint refusals, and says so", () => {
    const after = compiled(BEFORE.replace("    constraints:\n      amount: { max: 100 }\n", ""));
    const sim = simulate(compiled(BEFORE), after, [
      group({
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds/r1",
        code: "constraint_failed",
        count: 3,
      }),
      // Recorded as allowed (its amount passed): allowed either way, not counted.
      group({
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds/r2",
        decision: "ALLOW",
        code: undefined,
      }),
    ]);
    expect(sim.allowedCalls).toBe(3);
    expect(sim.refusalsLifted).toBe(3);
    expect(sim.undetermined).toBe(0);
    expect(sim.deniedCalls).toBe(0);
  });

  test("a call answered by something the change does not touch (a grant in force then) is not the change's", () => {
    const after = compiled(
      BEFORE.replace('"arn:aws:s3:::ledger/*"', '"arn:aws:s3:::ledger/*", "arn:aws:s3:::reports/*"'),
    );
    const sim = simulate(compiled(BEFORE), after, [
      // Allowed when made (by a temporary grant since gone): the file change would not have changed that.
      group({ resource: "arn:aws:s3:::reports/q1", decision: "ALLOW", code: undefined, count: 2 }),
      group({ resource: "arn:aws:s3:::reports/q2", count: 1 }),
    ]);
    expect(sim.allowed.map((g) => g.resource)).toEqual(["arn:aws:s3:::reports/q2"]);
    expect(sim.allowedCalls).toBe(1);
  });

  test("calls are decided at the time they were made: a grant that had expired then allows nothing", () => {
    const after = compiled(
      `${BEFORE}  - service: git\n    actions: [push]\n    resources: [acme/api]\n    expires: "2026-11-01T00:00:00Z"\n`,
    );
    const sim = simulate(compiled(BEFORE), after, [
      group({
        action: "git:push",
        resource: "acme/api",
        code: "no_service_grant",
        lastTs: Date.parse("2026-10-30T00:00:00Z"),
      }),
      group({ action: "git:push", resource: "acme/api", code: "no_service_grant", lastTs: T }),
    ]);
    expect(sim.allowed.map((g) => new Date(g.lastTs).toISOString())).toEqual(["2026-10-30T00:00:00.000Z"]);
  });

  test("a group whose answer changes within it (a grant expired) is told apart, to be decided in smaller pieces", () => {
    const after = compiled(
      `${BEFORE}  - service: git\n    actions: [push]\n    resources: [acme/api]\n    expires: "2026-11-01T00:00:00Z"\n`,
    );
    const push = { action: "git:push", resource: "acme/api", code: "no_service_grant" };
    const across = group({ ...push, firstTs: Date.parse("2026-10-30T00:00:00Z"), lastTs: T });
    const before = group({
      ...push,
      firstTs: Date.parse("2026-10-29T00:00:00Z"),
      lastTs: Date.parse("2026-10-30T00:00:00Z"),
    });
    expect(spansChange(compiled(BEFORE), after, across)).toBe(true);
    expect(spansChange(compiled(BEFORE), after, before)).toBe(false);
  });
});
