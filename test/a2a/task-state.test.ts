import { describe, expect, test } from "vitest";
import { type GrantArtifact, nextOutcome, outcomeOf, type TaskOutcome } from "../../src/a2a/task-state.js";
import type { AccessRequestView } from "../../src/butler/butler-service.js";

/** Pure: the task state an access request maps to, and whether a task moves. No database. */

const NOW = new Date("2026-01-01T12:00:00Z");

function request(over: Partial<AccessRequestView> = {}): AccessRequestView {
  return {
    id: "req_0123456789abcdef",
    kind: "grant",
    status: "pending",
    project: "billing",
    agent: "bot",
    action: "stripe:charges:read",
    resource: "stripe.com/v1/charges",
    branch: null,
    resource_pattern: null,
    reason: "reconcile",
    denial_event_id: null,
    risk_tier: "low" as AccessRequestView["risk_tier"],
    approvals_required: 2,
    approvals: [],
    requested_ttl: "PT1H",
    requested_ttl_seconds: 3600,
    created_at: "2026-01-01T11:00:00.000Z",
    expires_at: "2026-01-02T11:00:00.000Z",
    proposal: { diff: "", base_revision: 1, hash: "h" },
    blast_radius: null,
    call: null,
    decision: null,
    grant: null,
    ...over,
  };
}

const grant = (over: Partial<NonNullable<AccessRequestView["grant"]>> = {}) => ({
  id: "grt_0123456789abcdef",
  expires_at: "2026-01-01T13:00:00.000Z",
  revoked_at: null,
  used_at: null,
  ...over,
});

const decision = { by: "alice", via: "slack", at: "2026-01-01T11:30:00.000Z", reason: "not now" };

describe("outcomeOf: the task state an access request maps to", () => {
  test.each<
    [string, Partial<AccessRequestView>, TaskOutcome["state"], RegExp, GrantArtifact["state"] | undefined]
  >([
    [
      "pending, nobody yet",
      {},
      "input_required",
      /waiting for 2 approvals from billing approvers; /,
      undefined,
    ],
    [
      "pending, one of two",
      { approvals: [{ approver: "alice", channel: "slack", at: "x" }] },
      "input_required",
      /waiting for 1 approval .*\(1 of 2 so far\)/,
      undefined,
    ],
    [
      "approved, live",
      { status: "approved", grant: grant(), decision },
      "completed",
      /granted by alice via slack until/,
      "active",
    ],
    [
      "approved one-shot",
      { status: "approved", kind: "one_shot", grant: grant(), decision },
      "completed",
      /make exactly the same call/,
      "active",
    ],
    [
      "approved, used",
      { status: "approved", grant: grant({ used_at: "2026-01-01T12:00:00.000Z" }) },
      "completed",
      /was used at/,
      "used",
    ],
    [
      "approved, revoked",
      { status: "approved", grant: grant({ revoked_at: "2026-01-01T11:59:00.000Z" }) },
      "completed",
      /revoked at 2026-01-01T11:59:00.000Z: leaked; calls are denied again/,
      "revoked",
    ],
    [
      "approved, expired",
      { status: "approved", grant: grant({ expires_at: "2026-01-01T12:00:00.000Z" }) },
      "completed",
      /expired at/,
      "expired",
    ],
    [
      "approved, grant row gone",
      { status: "approved", grant: null },
      "completed",
      /revoked at an unknown time/,
      "revoked",
    ],
    ["denied", { status: "denied", decision }, "rejected", /^denied by alice via slack: not now$/, undefined],
    ["canceled", { status: "canceled" }, "canceled", /was canceled by the agent/, undefined],
    ["expired", { status: "expired" }, "failed", /nobody decided .* before it expired/, undefined],
    [
      "superseded",
      { status: "superseded", decision },
      "failed",
      /was superseded, nothing was granted: not now; ask again/,
      undefined,
    ],
  ])("%s", (_, over, state, text, grantState) => {
    const o = outcomeOf(request(over), NOW, { revision: 7, revokeReason: "leaked" });
    expect(o.state).toBe(state);
    expect(o.text).toMatch(text);
    expect(o.grant?.state).toBe(grantState);
    if (o.grant) expect(o.grant.revision).toBe(7);
  });

  test("the revoker's reason is on a revoked grant only", () => {
    const revoked = outcomeOf(request({ status: "approved", grant: grant({ revoked_at: "x" }) }), NOW, {
      revokeReason: "leaked",
    });
    expect(revoked.grant?.reason).toBe("leaked");
    expect(revoked.text).toMatch(/: leaked; calls are denied again/);
    const live = outcomeOf(request({ status: "approved", grant: grant() }), NOW, { revokeReason: "leaked" });
    expect(live.grant?.reason).toBeNull();
  });
});

describe("nextOutcome: whether a task moves", () => {
  const liveGrant = outcomeOf(request({ status: "approved", grant: grant(), decision }), NOW);
  const pending = outcomeOf(request(), NOW);
  test.each<[string, Parameters<typeof nextOutcome>[0], TaskOutcome, "moves" | "stays"]>([
    ["submitted → waiting", { state: "submitted", grantState: null, text: "filed" }, pending, "moves"],
    [
      "same state, same text",
      { state: "input_required", grantState: null, text: pending.text },
      pending,
      "stays",
    ],
    [
      "same state, new text (an approval came)",
      { state: "input_required", grantState: null, text: "older" },
      pending,
      "moves",
    ],
    [
      "waiting → completed",
      { state: "input_required", grantState: null, text: pending.text },
      liveGrant,
      "moves",
    ],
    [
      "completed, grant unchanged",
      { state: "completed", grantState: "active", text: "other" },
      liveGrant,
      "stays",
    ],
    [
      "an ended task never changes state",
      { state: "rejected", grantState: null, text: "denied" },
      outcomeOf(request({ status: "canceled" }), NOW),
      "stays",
    ],
  ])("%s", (_, task, outcome, expected) => {
    expect(nextOutcome(task, outcome) === undefined ? "stays" : "moves").toBe(expected);
  });

  test("a revoked grant never comes back to life on the task", () => {
    expect(nextOutcome({ state: "completed", grantState: "revoked", text: "x" }, liveGrant)).toBeUndefined();
  });

  test("a completed task hears of its grant's expiry", () => {
    const expired = outcomeOf(
      request({ status: "approved", grant: grant({ expires_at: NOW.toISOString() }) }),
      NOW,
    );
    const next = nextOutcome({ state: "completed", grantState: "active", text: liveGrant.text }, expired);
    expect(next?.grant?.state).toBe("expired");
  });

  test("a used grant stays used when its request is read again as live", () => {
    const next = nextOutcome({ state: "input_required", grantState: "used", text: "x" }, liveGrant);
    expect(next?.grant?.state).toBe("used");
    expect(liveGrant.grant?.state).toBe("active");
  });
});
