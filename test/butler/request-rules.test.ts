import { createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { callMatches, checkGrantCall, matchesFiled, staleUnder } from "../../src/butler/request-rules.js";
import type { accessRequests, auditEvents } from "../../src/db/schema.js";
import { callHash } from "../../src/grants/one-shot.js";
import { index } from "../helpers/policy.js";

/** The rules of access requests, as tables: no database, no clock but the one passed in. */

const BASE = `project: ops
agents: [deployer]
grants:
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ops/*"]
  - id: capped
    service: stripe
    actions: [refunds:create]
    constraints:
      amount: { max: 100 }
  - service: git
    actions: [push]
    branches: ["feature/*"]
approvers:
  - id: jordan
settings:
  grant_ttl: { default: PT1H, max: PT8H }
  never_grant: ["aws:iam:*"]
`;
const project = (text = BASE) => index(text).projects.get("ops")!;
const now = new Date("2026-05-01T10:00:00Z");
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

describe("checkGrantCall: what a grant may be written for", () => {
  const cases: [string, { action: string; resource: string; branch?: string }, string | "ok" | "allowed"][] =
    [
      ["an exact denied call", { action: "aws:s3:PutObject", resource: "arn:aws:s3:::ops/x" }, "ok"],
      [
        "a call the policy already allows",
        { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ops/x" },
        "allowed",
      ],
      ["not service:verb", { action: "s3", resource: "x" }, "action: must be service:verb"],
      [
        "whitespace in the resource",
        { action: "aws:s3:PutObject", resource: "a b" },
        "resource: a grant cannot name",
      ],
      ["a never-granted action", { action: "aws:iam:CreateUser", resource: "x" }, "is never granted in ops"],
      ["no resource", { action: "aws:s3:PutObject", resource: "" }, "resource: the call names no resource"],
      [
        "git without a branch",
        { action: "git:push", resource: "repo" },
        "branch: git calls in ops are limited by branch",
      ],
      [
        "a bad branch",
        { action: "git:push", resource: "repo", branch: "a:b" },
        "branch: a grant cannot name a branch",
      ],
      [
        "a call a constrained grant governs",
        { action: "stripe:refunds:create", resource: "r" },
        "grant capped",
      ],
    ];
  test.each(cases)("%s", (_what, call, want) => {
    const r = checkGrantCall(project(), "deployer", { branch: undefined, ...call }, now);
    if (want === "ok") expect(r).toMatchObject({ ok: true, decision: { decision: "DENY" } });
    else if (want === "allowed") expect(r).toMatchObject({ ok: true, decision: { decision: "ALLOW" } });
    else expect(r.ok ? "ok" : r.message).toContain(want);
  });
});

type Row = typeof accessRequests.$inferSelect;
type Audit = typeof auditEvents.$inferSelect;

function row(over: Partial<Row> = {}): Row {
  const diff = "--- a\n+++ b\n+grant";
  return {
    id: "req_0000000000000001",
    project: "ops",
    agent: "deployer",
    tokenId: "tok_x",
    status: "pending",
    action: "aws:s3:PutObject",
    resource: "arn:aws:s3:::ops/x",
    branch: null,
    reason: "deploy",
    denialEventId: null,
    requestedTtlSeconds: 3600,
    riskTier: "medium",
    approvalsRequired: 1,
    proposalDiff: diff,
    proposalBaseRevision: 1,
    proposalHash: sha(diff),
    dedupeKey: "k",
    createdAt: now,
    expiresAt: now,
    decidedAt: null,
    decidedBy: null,
    decidedVia: null,
    decisionReason: null,
    grantedTtlSeconds: null,
    remindedAt: null,
    remindersSent: 0,
    resourceGlob: null,
    blastRadius: null,
    rememberedBy: [],
    breakGlassBy: null,
    breakGlassReviewedBy: null,
    breakGlassReviewedAt: null,
    rememberedAt: null,
    rememberedTo: null,
    escalatedAt: null,
    kind: "grant",
    callHash: null,
    callParams: null,
    callParamsShown: null,
    callOperation: null,
    idempotencyKey: null,
    filedEventId: "evt_1",
    ...over,
  };
}

function filedOf(r: Row): Audit {
  return {
    seq: 1,
    eventId: "evt_1",
    ts: now,
    type: "access_request.filed",
    agent: r.agent,
    project: r.project,
    action: r.action,
    resource: r.resource,
    decision: null,
    reason: r.reason,
    httpStatus: null,
    details: {
      request_id: r.id,
      ttl: "PT1H",
      risk_tier: r.riskTier,
      approvals_required: r.approvalsRequired,
      proposal_hash: r.proposalHash,
      reason_sha256: sha(r.reason),
      ...(r.branch ? { branch: r.branch } : {}),
    },
    prevHash: "",
    hash: "",
  };
}

describe("matchesFiled: a stored request is what was filed", () => {
  const filed = filedOf(row());
  const edits: [string, Partial<Row>][] = [
    ["another resource", { resource: "arn:aws:s3:::ops/*" }],
    ["another action", { action: "aws:s3:DeleteObject" }],
    ["another agent", { agent: "other" }],
    ["a branch added", { branch: "main" }],
    ["a longer TTL", { requestedTtlSeconds: 7200 }],
    ["fewer approvals", { approvalsRequired: 0 }],
    ["a lower tier", { riskTier: "low" }],
    ["another reason", { reason: "the CFO said yes" }],
    ["another proposal", { proposalDiff: "--- a\n+++ b\n+everything" }],
    ["another proposal with its hash", { proposalDiff: "x", proposalHash: sha("x") }],
  ];
  test("as filed: matches", () => expect(matchesFiled(row(), filed)).toBe(true));
  test.each(edits)("%s: does not match", (_what, edit) => expect(matchesFiled(row(edit), filed)).toBe(false));
  test("another event type never matches", () =>
    expect(matchesFiled(row(), { ...filed, type: "access_request.denied" })).toBe(false));
});

describe("callMatches: a one-shot request's parameters are those of its call", () => {
  const call = { action: "aws:s3:PutObject", resource: "arn:aws:s3:::ops/x", params: { amount: 10 } };
  const oneShot = row({ kind: "one_shot", callParams: call.params, callHash: callHash(call) });
  test("as filed", () => expect(callMatches(oneShot)).toBe(true));
  test("another amount", () =>
    expect(callMatches({ ...oneShot, callParams: { amount: 1_000_000 } })).toBe(false));
  test("a grant request has no call to match", () => expect(callMatches(row())).toBe(true));
});

describe("staleUnder: whether a pending request still holds under the policy in force", () => {
  const cases: [string, string, Partial<Row>, string | undefined][] = [
    ["nothing changed", BASE, {}, undefined],
    [
      "the agent removed",
      BASE.replace("agents: [deployer]", "agents: [someone-else]"),
      {},
      "no longer in project",
    ],
    [
      "a shorter maximum TTL",
      BASE.replace("max: PT8H", "max: PT30M").replace("default: PT1H", "default: PT30M"),
      {},
      "maximum grant TTL is now PT30M",
    ],
    [
      "a higher tier",
      BASE.replace("never_grant:", 'risk: { "aws:s3:*": high }\n  never_grant:'),
      {},
      "now counts as high risk",
    ],
    [
      "never granted now",
      BASE.replace('never_grant: ["aws:iam:*"]', 'never_grant: ["aws:s3:*"]'),
      {},
      "is never granted",
    ],
    [
      "a constraint now governs the call",
      BASE,
      { action: "stripe:refunds:create", resource: "r", riskTier: "high", approvalsRequired: 2 },
      "grant capped",
    ],
    [
      "the policy now allows it",
      BASE.replace("actions: [s3:GetObject]", "actions: [s3:GetObject, s3:PutObject]"),
      {},
      "the policy now allows this call",
    ],
  ];
  test.each(cases)("%s", (_what, text, over, want) => {
    const stale = staleUnder(row(over), project(text), now);
    if (want === undefined) expect(stale).toBeUndefined();
    else expect(stale).toContain(want);
  });
});

describe("staleUnder for one-shot requests: what a person may still approve once", () => {
  // Payments are granted in the file but need a person above 50000; stripe is never granted by requests.
  const PAY = `project: ops
agents: [deployer]
grants:
  - service: stripe
    actions: [payment_intents:create]
    constraints:
      amount: { max: 1000000 }
require_approval:
  - actions: ["stripe:payment_intents:create"]
    when:
      amount: { min: 50001 }
approvers:
  - id: jordan
settings:
  never_grant: ["stripe:*"]
`;
  const call = (amount: number) => ({
    action: "stripe:payment_intents:create",
    resource: "stripe.com/v1/payment_intents",
    params: { amount },
  });
  const oneShot = (amount: number) =>
    row({
      kind: "one_shot",
      action: call(amount).action,
      resource: call(amount).resource,
      riskTier: "high",
      approvalsRequired: 2,
      callParams: call(amount).params,
      callHash: callHash(call(amount)),
    });

  test("a call the file's grant allows still holds, never_grant notwithstanding", () =>
    expect(staleUnder(oneShot(60_000), project(PAY), now)).toBeUndefined());
  test("a call the grant's constraint now refuses cannot be approved", () =>
    expect(staleUnder(oneShot(2_000_000), project(PAY), now)).toContain("an approval cannot lift this"));
  test("a denied call of a never-granted action cannot be approved", () =>
    expect(
      staleUnder(
        oneShot(60_000),
        project(PAY.replace("actions: [payment_intents:create]", "actions: [charges:read]")),
        now,
      ),
    ).toContain("is never granted"));
});

describe("matchesFiled for one-shot and older requests", () => {
  const params = { amount: 10 };
  const c = { action: "aws:s3:PutObject", resource: "arn:aws:s3:::ops/x", params };
  const oneShot = row({ kind: "one_shot", callParams: params, callHash: callHash(c) });
  const filed = filedOf(oneShot);
  filed.details.call_sha256 = oneShot.callHash;
  test("as filed", () => expect(matchesFiled(oneShot, filed)).toBe(true));
  test("another call hash", () =>
    expect(matchesFiled({ ...oneShot, callHash: "0".repeat(64) }, filed)).toBe(false));
  test("a grant request never matches a one-shot's line", () =>
    expect(matchesFiled(row(), filed)).toBe(false));
  test("a line filed before reasons were hashed still matches on everything else", () => {
    const { reason_sha256: _, ...older } = filedOf(row()).details;
    expect(matchesFiled(row(), { ...filedOf(row()), details: older })).toBe(true);
    expect(matchesFiled(row({ resource: "x" }), { ...filedOf(row()), details: older })).toBe(false);
  });
});
