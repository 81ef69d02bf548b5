import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { formatIssue, type PolicyIssue, parsePolicyFile, parsePolicySet } from "../../src/policy/index.js";
import { doc, SHIPPED_POLICY_FILE } from "../helpers/policy.js";

/** The seed's YAML exactly as the issue quotes it (flow lists, no approvers or settings). */
const SEED_VERBATIM = `project: project-billing
agents: [billing-reconciler-1, invoice-generator]
grants:
  - service: aws
    actions: [s3:GetObject, s3:PutObject]
    resources: ["arn:aws:s3:::ledger-internal/*"]
  - service: git
    actions: [read, push]
    resources: ["reidataai/billing-ledger"]
    branches: ["feature/*"]
  - service: tools
    actions: [Read, Edit, Bash]
    deny: ["rm -rf", "git push --force"]
`;

function issues(text: string, file = "policies/p.yaml"): PolicyIssue[] {
  const r = parsePolicyFile({ file, text });
  if (r.ok) throw new Error("expected the policy to be rejected");
  return r.error;
}

describe("parsing policy documents", () => {
  test("the seed's YAML is accepted verbatim, with defaults filled in", () => {
    const d = doc(SEED_VERBATIM);
    expect(d.project).toBe("project-billing");
    expect(d.agents.map((a) => a.name)).toEqual(["billing-reconciler-1", "invoice-generator"]);
    expect(d.grants.map((g) => g.id)).toEqual(["g_1", "g_2", "g_3"]);
    expect(d.grants[2]).toMatchObject({
      service: "tools",
      resources: undefined,
      deny: ["rm -rf", "git push --force"],
    });
    expect(d.settings).toMatchObject({
      grantTtlDefaultSeconds: 86400,
      grantTtlMaxSeconds: 604800,
      pendingTtlSeconds: 86400,
      approvals: { low: 1, medium: 1, high: 2 },
    });
  });

  test("the shipped policies/project-billing.yaml parses", () => {
    // Whatever an operator made of it: only that it still parses (the tests run on their own copy).
    const d = doc(readFileSync(SHIPPED_POLICY_FILE, "utf8"));
    expect(d.project).toBe("project-billing");
    // The seed shows the whole product: every tier's requests can be approved by its approvers
    // (with one approver, a high-risk request needing two could never be approved).
    for (const tier of ["low", "medium", "high"] as const) {
      const able = d.approvers.filter((a) => a.tiers === undefined || a.tiers.includes(tier));
      expect(able.length, `approvers who may decide ${tier}-risk requests`).toBeGreaterThanOrEqual(
        d.settings.approvals[tier],
      );
    }
  });

  test("every extension parses: roles, agent/role limits, constraints, expiry, approvers, settings", () => {
    const d = doc(`
project: payments
agents:
  - name: support-bot
    roles: [support-tier-1]
  - plain-agent
grants:
  - id: refunds
    service: stripe
    actions: [refunds:create]
    roles: [support-tier-1]
    agents: [plain-agent]
    constraints:
      amount: { max: 5000, min: 1 }
      currency: { in: [EUR, USD] }
      receiver.account_id: { not_in: [acc_x] }
      memo: { pattern: "ticket-*" }
    expires: 2026-12-31T23:59:59+01:00
approvers:
  - id: jordan
    name: Jordan Lee
    email: jordan@example.com
    slack: { user_id: U012ABCDEF, email: jordan@example.com }
    telegram: { user_id: 123456789 }
    tiers: [low, medium]
settings:
  grant_ttl: { default: PT1H, max: 86400 }
  pending_ttl: P1DT12H
  never_grant: ["aws:iam:*", "stripe:issuing:*"]
  approvals: { high: 3 }
  risk: { "stripe:refunds:*": high, "stripe:charges:read": low }
`);
    expect(d.grants[0]).toMatchObject({
      id: "refunds",
      roles: ["support-tier-1"],
      agents: ["plain-agent"],
      expiresAt: Date.parse("2026-12-31T22:59:59Z"),
    });
    expect(d.grants[0]!.constraints).toEqual([
      { param: "amount", max: 5000, min: 1 },
      { param: "currency", in: ["EUR", "USD"] },
      { param: "receiver.account_id", not_in: ["acc_x"] },
      { param: "memo", pattern: "ticket-*" },
    ]);
    expect(d.approvers[0]).toMatchObject({
      slack: { userId: "U012ABCDEF" },
      telegram: { userId: "123456789" },
      tiers: ["low", "medium"],
    });
    expect(d.settings).toMatchObject({
      grantTtlDefaultSeconds: 3600,
      grantTtlMaxSeconds: 86400,
      pendingTtlSeconds: 129600,
      approvals: { low: 1, medium: 1, high: 3 },
      risk: [
        { action: "stripe:refunds:*", tier: "high" },
        { action: "stripe:charges:read", tier: "low" },
      ],
    });
  });

  test("a misspelt key is rejected with file, line, column, path and a suggestion", () => {
    const text = SEED_VERBATIM.replace('    resources: ["reidataai', '    resouces: ["reidataai');
    const [i, ...rest] = issues(text);
    expect(rest).toEqual([]);
    expect(i).toMatchObject({ file: "policies/p.yaml", line: 9, col: 5, path: "grants[1].resouces" });
    expect(i!.message).toContain("unknown key 'resouces'; did you mean 'resources'?");
    expect(formatIssue(i!)).toMatch(/^policies\/p\.yaml:9:5: grants\[1\]\.resouces: unknown key 'resouces'/);
  });

  test("a malformed glob is rejected at the exact list item", () => {
    const text = SEED_VERBATIM.replace('branches: ["feature/*"]', 'branches: ["feature/*", "release/{a,b}"]');
    const [i] = issues(text);
    expect(i).toMatchObject({ line: 10, col: 29, path: "grants[1].branches[1]" });
    expect(i!.message).toContain("alternatives are not supported");
  });

  test("all problems are reported, not only the first", () => {
    const text = `project: p
agents: [a, a]
grants:
  - service: AWS
    actions: s3:GetObject
    resources: []
  - service: aws
    actions: ["aws:s3:GetObject"]
    roles: [ghost]
    agents: [nobody]
    expires: 2026-13-01T00:00:00Z
    extra: 1
`;
    const found = issues(text).map((i) => `${i.line}:${i.col} ${i.path}`);
    expect(found).toEqual([
      "4:14 grants[0].service",
      "5:14 grants[0].actions",
      "6:16 grants[0].resources",
      "11:14 grants[1].expires",
      "12:5 grants[1].extra",
    ]);
  });

  test("cross-reference problems are reported once the shape is right", () => {
    const text = `project: p
agents: [a, a]
grants:
  - service: aws
    actions: ["aws:s3:GetObject"]
    roles: [ghost]
    agents: [nobody]
  - id: g_1
    service: aws
    actions: [x]
    constraints:
      amount: { min: 10, max: 5 }
approvers:
  - id: j
    slack: { user_id: U0001 }
  - id: k
    slack: { user_id: U0001 }
settings:
  grant_ttl: { default: P8D, max: P7D }
`;
    const found = issues(text).map((i) => [`${i.line}:${i.col}`, i.path, i.message]);
    expect(found).toEqual([
      ["2:13", "agents[1]", "agent 'a' is listed twice"],
      [
        "5:15",
        "grants[0].actions[0]",
        "'aws:s3:GetObject' repeats the service; under service aws write 's3:GetObject'",
      ],
      ["6:13", "grants[0].roles[0]", "role 'ghost' is not held by any agent of this project"],
      ["7:14", "grants[0].agents[0]", "agent 'nobody' is not listed under agents of this project"],
      ["8:9", "grants[1].id", "grant id 'g_1' is already used by grants[0]"],
      ["12:15", "grants[1].constraints.amount", "min 10 is greater than max 5"],
      ["17:23", "approvers[1].slack.user_id", "Slack user U0001 is already bound to approver 'j'"],
      ["19:25", "settings.grant_ttl.default", "the default grant TTL is longer than the maximum (P7D)"],
    ]);
  });

  test.each([
    ["a duplicate key", "project: p\nproject: q\nagents: []\n", "2:1", "a key appears twice"],
    ["tabs", "project: p\nagents:\n\t- a\n", "3:1", "tabs cannot indent YAML"],
    ["an empty file", "", "1:1", "the file is empty"],
    ["only a comment", "# nothing\n", "1:1", "the file is empty"],
    ["a list at the top", "- a\n- b\n", "1:1", "must be a mapping"],
    [
      "two documents",
      "project: p\nagents: []\n---\nproject: q\nagents: []\n",
      "3:1",
      "more than one YAML document",
    ],
    ["a missing project", "agents: []\n", "1:1", "'project' is required"],
    [
      "a missing service",
      "project: p\nagents: []\ngrants:\n  - actions: [x]\n",
      "4:5",
      "'service' is required",
    ],
    [
      "a naive timestamp",
      "project: p\nagents: []\ngrants:\n  - service: s\n    actions: [x]\n    expires: 2026-12-31\n",
      "6:14",
      "not a timestamp with a time zone",
    ],
    [
      "years in a duration",
      "project: p\nagents: []\nsettings:\n  pending_ttl: P1Y\n",
      "4:16",
      "years or months",
    ],
    [
      "a bad tier",
      "project: p\nagents: []\nsettings:\n  risk: { 'aws:*': extreme }\n",
      "4:20",
      "must be low, medium or high",
    ],
    ["an unknown top-level key", "project: p\nagent: [a]\nagents: []\n", "2:1", "did you mean 'agents'?"],
    [
      "a bad constraint key",
      "project: p\nagents: []\ngrants:\n  - service: s\n    actions: [x]\n    constraints: { 'a..b': { max: 1 } }\n",
      "6:20",
      "the key must be a parameter name",
    ],
    [
      "an empty constraint",
      "project: p\nagents: []\ngrants:\n  - service: s\n    actions: [x]\n    constraints: { a: {} }\n",
      "6:23",
      "names no check",
    ],
    [
      "a bad deny glob",
      "project: p\nagents: []\ngrants:\n  - service: s3\n    actions: [x]\n    deny: ['a[b']\n",
      "6:12",
      "character classes",
    ],
  ])("rejects %s", (_name, text, pos, message) => {
    const all = issues(text);
    expect(all.map((i) => `${i.line}:${i.col}`)).toContain(pos);
    expect(all.map((i) => i.message).join("\n")).toContain(message);
  });

  test("reminders: the schedule is read, and an escalation naming nobody or an unknown approver is refused", () => {
    const base = "project: p\nagents: [a]\napprovers: [{ id: jo }, { id: sam }]\nsettings:\n";
    expect(
      doc(`${base}  reminders: { after: PT30M, every: PT10M, escalate: { after: PT1H, approvers: [sam] } }\n`)
        .settings.reminders,
    ).toEqual({
      afterSeconds: 1800,
      everySeconds: 600,
      escalate: { afterSeconds: 3600, approvers: ["sam"], slack: undefined, telegram: undefined },
    });
    expect(doc(`${base}  reminder_after: PT1H\n`).settings.reminders).toEqual({
      afterSeconds: 3600,
      everySeconds: undefined,
      escalate: undefined,
    });
    const bad = (settings: string) => issues(`${base}${settings}`).map((i) => `${i.path}: ${i.message}`);
    expect(bad("  reminders: { after: PT1H, escalate: { after: PT2H, approvers: [max] } }\n")).toEqual([
      "settings.reminders.escalate.approvers[0]: approver 'max' is not in approvers",
    ]);
    expect(bad("  reminders: { after: PT1H, escalate: { after: PT2H } }\n")).toEqual([
      "settings.reminders.escalate: needs approvers, slack or telegram: who the request escalates to",
    ]);
    expect(bad("  reminders: { after: PT1H, escalate: { after: PT2H, approvers: [jo, sam] } }\n")[0]).toMatch(
      /names every approver/,
    );
    expect(bad("  reminder_after: PT1H\n  reminders: { after: PT1H }\n")[0]).toMatch(/not both/);
  });

  test("a YAML alias bomb is refused instead of expanding", () => {
    const lines = ["project: p", "agents: []", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 12; i++)
      lines.push(
        `a${i}: &a${i} [*a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}, *a${i - 1}]`,
      );
    const all = issues(lines.join("\n"));
    expect(all).toHaveLength(1);
    expect(all[0]!.message).toContain("Excessive alias count");
  });
});

describe("parsing a set of files", () => {
  test("a project defined twice is refused in both files, each naming the other", () => {
    const r = parsePolicySet([
      { file: "policies/b.yaml", text: "project: dup\nagents: []\n" },
      { file: "policies/a.yaml", text: "# copy\nproject: dup\nagents: [x]\n" },
      { file: "policies/c.yaml", text: "project: fine\nagents: []\n" },
    ]);
    expect(r.documents.map((d) => d.document.project)).toEqual(["fine"]);
    expect(r.failures.map((f) => [f.file, f.project, f.issues.map(formatIssue)])).toEqual([
      [
        "policies/a.yaml",
        "dup",
        [
          "policies/a.yaml:2:10: project: project 'dup' is also defined in policies/b.yaml; each project has exactly one policy file",
        ],
      ],
      [
        "policies/b.yaml",
        "dup",
        [
          "policies/b.yaml:1:10: project: project 'dup' is also defined in policies/a.yaml; each project has exactly one policy file",
        ],
      ],
    ]);
  });

  test("a broken file names its project when it can be read", () => {
    const r = parsePolicySet([{ file: "x.yaml", text: "project: billing\nagents: [a]\ngrants: 3\n" }]);
    expect(r.failures[0]).toMatchObject({ project: "billing" });
  });
});
