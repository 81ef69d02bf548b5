import { describe, expect, test } from "vitest";
import { MEMO_MAX_ENTRIES, MEMO_MAX_KEY_CHARS, memoOf } from "../../src/policy/decision-memo.js";
import {
  type Call,
  type CompiledProject,
  compilePolicies,
  compileProject,
  evaluate,
  evaluateIn,
  evaluateUnmemoized,
  normaliseCommand,
  type PolicyIndex,
} from "../../src/policy/index.js";
import { doc } from "../helpers/policy.js";
import { referenceEvaluate } from "./reference-evaluate.js";

const T1 = Date.parse("2026-05-01T12:00:00Z");
const T2 = Date.parse("2026-06-01T00:00:00Z");
const T3 = Date.parse("2026-07-15T08:30:00Z");
const EXPIRIES = [T1, T2, T3];

/** A project that uses everything a decision can depend on. */
const POLICY = `
project: memo
agents:
  - { name: alice, roles: [reader] }
  - { name: bob, roles: [writer] }
  - { name: carol, roles: [reader, writer] }
grants:
  - id: s3-read
    service: aws
    actions: [s3:GetObject, "s3:List*"]
    resources: ["arn:aws:s3:::data/*"]
    deny: ["arn:aws:s3:::data/secret/*"]
  - id: s3-read-temp
    service: aws
    actions: ["s3:Get*"]
    resources: ["arn:aws:s3:::tmp-?/*"]
    expires: 2026-05-01T12:00:00Z
  - id: s3-write
    service: aws
    actions: [s3:PutObject]
    roles: [writer]
    expires: 2026-06-01T00:00:00Z
  - id: git-push
    service: git
    actions: [push]
    resources: [org/app]
    branches: ["feature/*", "fix-?"]
    agents: [alice]
    roles: [writer]
  - id: refunds
    service: stripe
    actions: [refunds:create]
    roles: [writer]
    constraints:
      amount: { max: 5000, min: 1 }
      currency: { in: [EUR, USD] }
      receiver.account: { not_in: [acc_blocked] }
    expires: 2026-07-15T08:30:00Z
  - id: charges
    service: stripe
    actions: ["charges:*"]
    constraints:
      memo: { pattern: "ticket-*" }
  - id: charges-bob
    service: stripe
    actions: ["charges:read"]
    agents: [bob]
    expires: 2026-06-01T00:00:00Z
  - id: shell
    service: tools
    actions: [Bash, Read]
    deny: ["rm -rf", "git push --force"]
  - id: shell-late
    service: tools
    actions: ["Ba*"]
    expires: 2026-07-15T08:30:00Z
`;

/** A small deterministic generator, so that a failure names a reproducible case. */
function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return { next, pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]! };
}

const AGENTS = ["alice", "bob", "carol", "mallory", ""];
const CALLS: Omit<Call, "agent" | "project">[] = [];
{
  const r = rng(15);
  const s3 = [
    "arn:aws:s3:::data/a.csv",
    "arn:aws:s3:::data/secret/k",
    "arn:aws:s3:::tmp-1/x",
    "arn:aws:s3:::tmp-12/x",
  ];
  const money: Record<string, unknown>[] = [
    { amount: 500, currency: "EUR", receiver: { account: "acc_1" } },
    { amount: 7000, currency: "EUR", receiver: { account: "acc_1" } },
    { amount: "4500", currency: "USD", receiver: { account: "acc_1" } },
    { amount: 0, currency: "USD", receiver: { account: "acc_1" } },
    { amount: 10, currency: "GBP", receiver: { account: "acc_1" } },
    { amount: 10, currency: "EUR", receiver: { account: "acc_blocked" } },
    { amount: 10, currency: "EUR" },
    { amount: [1], currency: "EUR", receiver: { account: "acc_1" } },
    { memo: "ticket-42" },
    { memo: "other" },
    { memo: { nested: true } },
  ];
  const commands: Record<string, unknown>[] = [
    { command: "ls -la" },
    { command: "rm -rf /" },
    { command: "rm  '-rf'  /tmp" },
    { command: "echo hi\tthere", args: ["git push  --force"] },
    { command: "git push --force-with-lease" },
    { command: ["ls", { deep: "rm -rf x" }] },
    { command: "rm\u00a0-rf /" },
    { command: "café" },
    { command: deep(40) },
    { many: Array.from({ length: 10_001 }, (_, i) => `arg${i}`) },
  ];
  /** Each action with the resources, branches and parameters that make its calls interesting. */
  const shapes: [string[], string[], (string | undefined)[], (Record<string, unknown> | undefined)[]][] = [
    [
      ["aws:s3:GetObject", "aws:s3:ListBucket", "aws:s3:PutObject", "aws:s3:DeleteObject"],
      s3,
      [undefined],
      [undefined],
    ],
    [
      ["git:push", "git:pull"],
      ["org/app", "org/other"],
      [undefined, "", "main", "feature/x", "fix-1", "fix-12"],
      [undefined],
    ],
    [
      ["stripe:refunds:create", "stripe:charges:read", "stripe:charges:create"],
      ["stripe.com/v1/x"],
      [undefined],
      [undefined, {}, ...money],
    ],
    [["tools:Bash", "tools:Read", "tools:Banner"], [""], [undefined], [undefined, ...commands]],
    [["gcp:storage:get", "nocolon", ":x", "aws:"], ["", "x"], [undefined, "main"], [undefined]],
  ];
  for (let i = 0; i < 800; i++) {
    const [actions, resources, branches, params] = r.pick(shapes);
    CALLS.push({
      action: r.pick(actions),
      resource: r.pick(resources),
      branch: r.pick(branches),
      params: r.pick(params),
    });
  }
}

function deep(n: number): unknown {
  let v: unknown = "rm -rf /";
  for (let i = 0; i < n; i++) v = { v };
  return v;
}

/** Every expiry, and the instants right before and after it. */
const TIMES = [T1 - 86_400_000, ...EXPIRIES.flatMap((t) => [t - 1, t, t + 1]), T3 + 86_400_000];

function compiled(revision = 1): PolicyIndex {
  return compilePolicies([{ document: doc(POLICY), revision }]);
}

describe("the decision memo", () => {
  test("normaliseCommand's fast path gives what the regex rewrite gives", () => {
    const rewrite = (t: string) =>
      t
        .replace(/["'\\`]/g, "")
        .replace(/\s+/g, " ")
        .trim();
    const r = rng(7);
    const alphabet = [
      "a",
      "b",
      " ",
      "  ",
      "\t",
      "\n",
      '"',
      "'",
      "`",
      "\\",
      "\u00a0",
      "é",
      "-",
      "\u2028",
      "\x7f",
    ];
    const samples = ["", " ", "ls -la", " ls", "ls ", "rm -rf /", "a  b", "a\tb"];
    for (let i = 0; i < 5000; i++) {
      let s = "";
      const len = Math.floor(r.next() * 8);
      for (let j = 0; j < len; j++) s += r.pick(alphabet);
      samples.push(s);
    }
    for (const s of samples) expect(normaliseCommand(s), JSON.stringify(s)).toBe(rewrite(s));
  });

  test("memoized, unmemoized and the pre-memo engine agree on every call at every time, in any order", () => {
    const index = compiled();
    const r = rng(42);
    let compared = 0;
    const seen = new Set<string>();
    // Three rounds: the first fills the memo, the later ones answer from it at other times
    // (including earlier ones: the clock may step back).
    for (let round = 0; round < 3; round++) {
      for (const c of CALLS) {
        const call: Call = { agent: r.pick(AGENTS), project: r.pick(["memo", "memo", "nope"]), ...c };
        for (let k = 0; k < 3; k++) {
          const now = r.pick(TIMES);
          const expected = referenceEvaluate(index, call, now);
          expect(evaluateUnmemoized(index, call, now)).toEqual(expected);
          expect(evaluate(index, call, now)).toEqual(expected);
          seen.add(expected.decision === "ALLOW" ? `ALLOW ${expected.grantId}` : expected.code);
          compared++;
        }
      }
    }
    expect(compared).toBe(3 * 3 * CALLS.length);
    // The generated calls reach every kind of answer the policy can give.
    expect([...seen].sort()).toEqual(
      [
        "ALLOW charges",
        "ALLOW charges-bob",
        "ALLOW git-push",
        "ALLOW refunds",
        "ALLOW s3-read",
        "ALLOW s3-read-temp",
        "ALLOW s3-write",
        "ALLOW shell",
        "ALLOW shell-late",
        "agent_not_covered",
        "branch_not_covered",
        "constraint_failed",
        "deny_pattern",
        "grant_expired",
        "invalid_action",
        "no_action_grant",
        "no_project",
        "no_service_grant",
        "resource_not_covered",
        "unknown_agent",
      ].sort(),
    );
  });

  test("an answer remembered before a grant's expiry is not given after it, nor the other way round", () => {
    const project = compiled().projects.get("memo")!;
    const put: Call = { agent: "bob", project: "memo", action: "aws:s3:PutObject", resource: "x" };
    // Remembered from the second call of an agent's action on (the first remembers the action).
    evaluateIn(project, put, T2 - 1);
    const before = evaluateIn(project, put, T2 - 1);
    expect(before).toMatchObject({ decision: "ALLOW", grantId: "s3-write", expiresAt: T2 });
    expect(evaluateIn(project, put, T2 - 1)).toBe(before);
    expect(evaluateIn(project, put, T2)).toMatchObject({ decision: "DENY", code: "grant_expired" });
    expect(evaluateIn(project, put, T2 + 1)).toMatchObject({ decision: "DENY", code: "grant_expired" });
    // A clock that steps back sees the grant in force again.
    expect(evaluateIn(project, put, T2 - 1)).toEqual(before);
  });

  test("calls that differ only in their parameters get their own answers", () => {
    const project = compiled().projects.get("memo")!;
    const refund = (params: Record<string, unknown>): Call => ({
      agent: "bob",
      project: "memo",
      action: "stripe:refunds:create",
      resource: "stripe.com/v1/refunds",
      params,
    });
    const ok = { amount: 500, currency: "EUR", receiver: { account: "acc_1" } };
    const big = { ...ok, amount: 7000 };
    for (let i = 0; i < 2; i++) {
      expect(evaluateIn(project, refund(ok), T1)).toMatchObject({ decision: "ALLOW", grantId: "refunds" });
      expect(evaluateIn(project, refund(big), T1)).toMatchObject({
        decision: "DENY",
        code: "constraint_failed",
        reason: "amount 7000 exceeds max 5000 in grant refunds",
      });
    }
    expect(evaluateIn(project, refund(ok), T3)).toMatchObject({ decision: "DENY", code: "grant_expired" });
    const bash = (command: string): Call => ({
      agent: "alice",
      project: "memo",
      action: "tools:Bash",
      resource: "",
      params: { command },
    });
    for (let i = 0; i < 2; i++) {
      expect(evaluateIn(project, bash("ls -la"), T1)).toMatchObject({ decision: "ALLOW", grantId: "shell" });
      expect(evaluateIn(project, bash('rm  "-rf" /'), T1)).toMatchObject({
        decision: "DENY",
        code: "deny_pattern",
        reason: 'command matches deny pattern "rm -rf" of grant shell',
      });
    }
  });

  test("a remembered answer is the same object every time, frozen: a repeated call allocates no answer", () => {
    const project = compiled().projects.get("memo")!;
    const calls: Call[] = [
      { agent: "alice", project: "memo", action: "aws:s3:GetObject", resource: "arn:aws:s3:::data/a" },
      { agent: "alice", project: "memo", action: "aws:s3:GetObject", resource: "arn:aws:s3:::other" },
      { agent: "mallory", project: "memo", action: "aws:s3:GetObject", resource: "x" },
      { agent: "alice", project: "memo", action: "gcp:storage:get", resource: "x" },
      { agent: "alice", project: "memo", action: "tools:Bash", resource: "", params: { command: "ls" } },
      { agent: "bob", project: "memo", action: "aws:s3:PutObject", resource: "x" },
    ];
    for (const c of calls) {
      // The first call remembers the agent's action, the second the resource's entry, the third
      // (for answers that depend on parameters) the answer itself.
      for (let i = 0; i < 3; i++) evaluateIn(project, { ...c }, T1);
      const first = evaluateIn(project, { ...c }, T1);
      expect(evaluateIn(project, { ...c }, T1), c.action).toBe(first);
      expect(Object.isFrozen(first)).toBe(true);
    }
  });

  test("a new revision, or any other compiled object, never answers from another's memo", () => {
    const first = compiled(1);
    const get: Call = {
      agent: "alice",
      project: "memo",
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::data/a",
    };
    expect(evaluate(first, get, T1)).toMatchObject({ decision: "ALLOW", revision: 1 });
    expect(evaluate(first, get, T1)).toMatchObject({ decision: "ALLOW", revision: 1 });
    // Revision 2 drops the grant; the same revision number compiled again with the grant's
    // resources changed must not answer from revision 1's memo either.
    const without = doc(
      POLICY.replace('resources: ["arn:aws:s3:::data/*"]', 'resources: ["arn:aws:s3:::elsewhere/*"]'),
    );
    const second = compilePolicies([{ document: without, revision: 2 }]);
    expect(evaluate(second, get, T1)).toMatchObject({
      decision: "DENY",
      code: "resource_not_covered",
      revision: 2,
    });
    const sameNumber = compileProject({ document: without, revision: 1 });
    expect(evaluateIn(sameNumber, get, T1)).toMatchObject({ decision: "DENY", code: "resource_not_covered" });
    // A copy of a compiled project (as a store may build one from another) starts empty too.
    const copy: CompiledProject = {
      ...second.projects.get("memo")!,
      exactActions: first.projects.get("memo")!.exactActions,
    };
    expect(evaluateIn(copy, get, T1)).toEqual(
      evaluateUnmemoized({ projects: new Map([["memo", copy]]) }, get, T1),
    );
    // A frozen compiled project has a memo of its own too.
    const frozen = Object.freeze(compileProject({ document: without, revision: 3 }));
    for (let i = 0; i < 3; i++)
      expect(evaluateIn(frozen, get, T1)).toMatchObject({
        decision: "DENY",
        code: "resource_not_covered",
        revision: 3,
      });
    expect(memoOf(frozen).entries).toBe(2);
    // And the first revision still answers as before.
    expect(evaluate(first, get, T1)).toMatchObject({ decision: "ALLOW", revision: 1 });
  });

  test("a memo holds at most MEMO_MAX_ENTRIES entries, however many distinct calls come, and still answers right", () => {
    const index = compiled();
    const project = index.projects.get("memo")!;
    const memo = () => memoOf(project);
    let most = 0;
    for (let i = 0; i < MEMO_MAX_ENTRIES * 3; i++) {
      const call: Call = {
        agent: i % 7 === 0 ? `stranger-${i}` : "alice",
        project: "memo",
        action: i % 5 === 0 ? `aws:s3:Get${i}` : "aws:s3:GetObject",
        resource: `arn:aws:s3:::data/${i}`,
      };
      expect(evaluate(index, call, T1)).toEqual(referenceEvaluate(index, call, T1));
      most = Math.max(most, memo().entries);
    }
    expect(most).toBe(MEMO_MAX_ENTRIES);
    expect(memo().entries).toBeLessThanOrEqual(MEMO_MAX_ENTRIES);
    // What was dropped is decided again, and right.
    const again: Call = {
      agent: "alice",
      project: "memo",
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::data/1",
    };
    expect(evaluate(index, again, T1)).toMatchObject({ decision: "ALLOW", grantId: "s3-read" });
  });

  test("calls with very long actions, resources or branches are answered but not remembered", () => {
    const index = compiled();
    const project = index.projects.get("memo")!;
    const before = memoOf(project).entries;
    const long = "x".repeat(MEMO_MAX_KEY_CHARS);
    const calls: Call[] = [
      { agent: "alice", project: "memo", action: "aws:s3:GetObject", resource: `arn:aws:s3:::data/${long}` },
      { agent: "alice", project: "memo", action: `aws:s3:${long}`, resource: "arn:aws:s3:::data/a" },
      { agent: `m${long}`, project: "memo", action: "aws:s3:GetObject", resource: "a" },
    ];
    for (const c of calls) {
      for (let i = 0; i < 2; i++) expect(evaluate(index, c, T1)).toEqual(referenceEvaluate(index, c, T1));
    }
    // Only the (agent, action) step of the first call is remembered: its action is short.
    expect(memoOf(project).entries).toBe(before + 1);
  });
});
