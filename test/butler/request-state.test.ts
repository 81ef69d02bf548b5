import { describe, expect, test } from "vitest";
import {
  decideReview,
  pressAnswer,
  type ReviewFacts,
  supersession,
  tallyApprovals,
} from "../../src/butler/request-state.js";

/** The review state machine, as tables: no database. */

const now = new Date("2026-05-01T10:00:00Z");
const later = new Date("2026-05-01T11:00:00Z");
const facts = (
  over: Partial<ReviewFacts> = {},
  request: Partial<ReviewFacts["request"]> = {},
): ReviewFacts => ({
  request: {
    id: "req_1",
    agent: "deployer",
    project: "ops",
    status: "pending",
    expiresAt: later,
    riskTier: "medium",
    requestedTtlSeconds: 3600,
    ...request,
  },
  decided: "already approved by sam",
  approver: "jordan",
  verdict: "approve",
  ttlSeconds: undefined,
  now,
  mine: undefined,
  conflicted: false,
  entry: { tiers: ["low", "medium"] },
  ...over,
});

describe("decideReview: the first rule a press breaks", () => {
  const cases: [string, ReviewFacts, string, string?][] = [
    ["an approver of the tier, on a pending request", facts(), "proceed"],
    ["the agent itself", facts({ approver: "deployer" }), "refuse", "an agent never decides its own request"],
    [
      "the agent, even if the files also disagree on it",
      facts({ approver: "deployer", conflicted: true }),
      "refuse",
      "an agent never decides",
    ],
    [
      "a person the files disagree on",
      facts({ conflicted: true }),
      "refuse",
      "define approver 'jordan' differently",
    ],
    [
      "someone who is no approver here",
      facts({ entry: undefined }),
      "refuse",
      "you are not an approver for ops",
    ],
    [
      "an approver of lower tiers only",
      facts({ entry: { tiers: ["low"] } }),
      "refuse",
      "may not decide medium-risk requests of ops",
    ],
    ["a refusal comes before expiry", facts({ entry: undefined }, { expiresAt: now }), "refuse"],
    [
      "a pending request at its deadline",
      facts({}, { expiresAt: now }),
      "expire",
      "expired at 2026-05-01T10:00:00.000Z",
    ],
    [
      "a decided request past its deadline is not expired again",
      facts({}, { status: "approved", expiresAt: now }),
      "reject",
      "is already approved by sam",
    ],
    [
      "the same press on a decided request",
      facts({ mine: { verdict: "approve" } }, { status: "approved" }),
      "unchanged",
    ],
    [
      "the other verdict on a decided request",
      facts({ verdict: "deny", mine: { verdict: "approve" } }, { status: "approved" }),
      "reject",
      "is already approved by sam",
    ],
    [
      "someone else's press on a decided request",
      facts({}, { status: "denied" }),
      "reject",
      "ALREADY_DECIDED",
    ],
    [
      "a TTL longer than asked",
      facts({ ttlSeconds: 3601 }),
      "reject",
      "may shorten the requested PT1H, not lengthen it",
    ],
    ["a TTL as long as asked", facts({ ttlSeconds: 3600 }), "proceed"],
    [
      "a denial after one's own approval",
      facts({ verdict: "deny", mine: { verdict: "approve" } }),
      "reject",
      "you already approved request req_1",
    ],
    [
      "the same approval again while pending goes on (the insert is what is idempotent)",
      facts({ mine: { verdict: "approve" } }),
      "proceed",
    ],
  ];
  test.each(cases)("%s → %s", (_name, f, step, words) => {
    const got = decideReview(f);
    expect(got.step).toBe(step);
    if (words) expect(JSON.stringify(got)).toContain(words);
  });

  test("a rejected TTL and a second verdict say which code to answer with", () => {
    expect(decideReview(facts({ ttlSeconds: 7200 }))).toMatchObject({ code: "INVALID_INPUT" });
    expect(decideReview(facts({ verdict: "deny", mine: { verdict: "approve" } }))).toMatchObject({
      code: "ALREADY_DECIDED",
    });
  });
});

describe("tallyApprovals: record or approve, and for how long", () => {
  const r = {
    agent: "deployer",
    riskTier: "medium" as const,
    approvalsRequired: 2,
    requestedTtlSeconds: 3600,
  };
  const at = (m: number) => new Date(now.getTime() + m * 60_000);
  const everyone = () => ({ tiers: ["low", "medium"] as ("low" | "medium" | "high")[] });
  const approval = (approver: string, m: number, ttlSeconds: number | null = null) => ({
    approver,
    verdict: "approve" as const,
    createdAt: at(m),
    ttlSeconds,
  });

  test("one of two approvals is recorded", () => {
    expect(tallyApprovals(r, [approval("jordan", 0)], "jordan", everyone, now)).toEqual({
      step: "record",
      approvals: 1,
    });
  });

  test("the second approves, for the shortest TTL any approver chose, from now, in the order they approved", () => {
    const t = tallyApprovals(r, [approval("sam", 1, 600), approval("jordan", 0, 1800)], "sam", everyone, now);
    expect(t).toEqual({
      step: "approve",
      ttlSeconds: 600,
      approvedBy: ["jordan", "sam"],
      expiresAt: new Date(now.getTime() + 600_000),
    });
  });

  test("without a chosen TTL the request's own holds", () => {
    const t = tallyApprovals(r, [approval("jordan", 0), approval("sam", 1)], "sam", everyone, now);
    expect(t).toMatchObject({ step: "approve", ttlSeconds: 3600 });
  });

  test("an earlier approver removed since, or limited to lower tiers, no longer counts; the presser does", () => {
    const entryOf = (id: string) => (id === "sam" ? { tiers: ["low" as const] } : undefined);
    const t = tallyApprovals(
      r,
      [approval("jordan", 0), approval("sam", 1), approval("alex", 2)],
      "alex",
      entryOf,
      now,
    );
    expect(t).toEqual({ step: "record", approvals: 1 });
  });

  test("the agent's own approval row never counts", () => {
    const t = tallyApprovals(r, [approval("deployer", 0), approval("sam", 1)], "sam", everyone, now);
    expect(t).toEqual({ step: "record", approvals: 1 });
  });

  test("denials are not approvals", () => {
    const t = tallyApprovals(
      r,
      [{ ...approval("jordan", 0), verdict: "deny" }, approval("sam", 1)],
      "sam",
      everyone,
      now,
    );
    expect(t).toEqual({ step: "record", approvals: 1 });
  });
});

describe("supersession: who hears what", () => {
  test("a policy change is explained to everyone", () => {
    const w = supersession({ check: "policy", detail: "amount is above the maximum 100" });
    expect(w.toAgent).toBe(
      "the policy changed since this was filed; ask again (amount is above the maximum 100)",
    );
    expect(w.decisionReason).toBe("amount is above the maximum 100");
    expect(w.cardNote).toContain("Superseded, nothing granted");
    expect(w.error).toContain("the agent was told");
  });

  test("a tampered row: the agent is not told which tamper check fired; the audit line and approver are", () => {
    const w = supersession({ check: "integrity", detail: "the stored request differs from what was filed" });
    expect(w.toAgent).toBe("this request was altered after it was filed; ask again");
    expect(w.decisionReason).toBe(w.toAgent);
    expect(w.audit).toContain("the stored request differs");
    expect(w.error).toContain("the stored request differs");
  });
});

describe("pressAnswer: what the person who pressed reads", () => {
  const v = (status: "pending" | "approved", approvals: number, by?: string) => ({
    status,
    approvals: Array.from({ length: approvals }, (_, i) => ({ approver: `a${i}`, channel: "slack", at: "" })),
    approvals_required: 2,
    decision: by ? { by, via: "slack", at: "", reason: null } : null,
  });
  test.each([
    ["recorded", v("pending", 1), "Recorded: 1 of 2 approvals"],
    ["unchanged", v("pending", 1), "You already approved this request: 1 of 2 approvals, waiting for 1 more"],
    ["unchanged", v("approved", 2, "a0, a1"), "Nothing changed: the request is already approved by a0, a1"],
    ["approved", v("approved", 2, "a0, a1"), "Request approved"],
  ] as const)("%s", (outcome, view, words) => {
    expect(pressAnswer(outcome, view)).toContain(words);
  });
});
