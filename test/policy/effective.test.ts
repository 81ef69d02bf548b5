import { applyPatch } from "diff";
import { describe, expect, test } from "vitest";
import {
  appendToFile,
  composeEffective,
  type GrantEntry,
  policyDiff,
  proposeEffective,
  renderGrant,
} from "../../src/policy/effective.js";
import { compilePolicies, evaluate, parsePolicyFile } from "../../src/policy/index.js";
import { classifyRisk } from "../../src/policy/risk.js";
import { escapeGlob, scopeRequest } from "../../src/policy/scope.js";
import { seedText } from "../helpers/policy.js";

const NOW = Date.parse("2026-05-01T17:43:04Z");
const grant = (over: Partial<GrantEntry> = {}): GrantEntry => ({
  id: "req_5c94d8",
  agent: "billing-reconciler-1",
  action: "stripe:charges:read",
  resource: "stripe.com/v1/charges",
  branch: undefined,
  expiresAt: NOW + 24 * 3600 * 1000,
  note: "access request req_5c94d8 by billing-reconciler-1, approved by jordan",
  ...over,
});

function decide(
  yaml: string,
  call: { action: string; resource: string; branch?: string; agent?: string },
  at = NOW,
) {
  const r = parsePolicyFile({ file: "effective.yaml", text: yaml });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return evaluate(
    compilePolicies([{ document: r.value, revision: 1 }]),
    { agent: "billing-reconciler-1", project: r.value.project, ...call },
    at,
  );
}

describe("the effective policy", () => {
  test("a grant is spliced into the baseline: the diff adds exactly its lines", () => {
    const before = seedText();
    const after = composeEffective(before, [grant()]);
    const diff = policyDiff("project-billing", before, after, "revision 1", "proposed");
    const changed = diff.split("\n").filter((l) => /^[+-](?![+-]{2} )/.test(l));
    expect(changed).toEqual([
      "+  # access request req_5c94d8 by billing-reconciler-1, approved by jordan",
      "+  - id: req_5c94d8",
      '+    service: "stripe"',
      '+    actions: ["charges:read"]',
      '+    resources: ["stripe.com/v1/charges"]',
      '+    agents: ["billing-reconciler-1"]',
      '+    expires: "2026-05-02T17:43:04Z"',
    ]);
    expect(decide(after, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" })).toMatchObject(
      {
        decision: "ALLOW",
        grantId: "req_5c94d8",
      },
    );
    expect(
      decide(before, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" }).decision,
    ).toBe("DENY");
  });

  test("the grant covers exactly the call: not another resource, not another agent, not after it expires", () => {
    const after = composeEffective(seedText(), [grant()]);
    expect(
      decide(after, { action: "stripe:charges:read", resource: "stripe.com/v1/charges/ch_1" }).decision,
    ).toBe("DENY");
    expect(decide(after, { action: "stripe:charges:list", resource: "stripe.com/v1/charges" }).decision).toBe(
      "DENY",
    );
    expect(
      decide(after, {
        action: "stripe:charges:read",
        resource: "stripe.com/v1/charges",
        agent: "invoice-generator",
      }).decision,
    ).toBe("DENY");
    expect(
      decide(
        after,
        { action: "stripe:charges:read", resource: "stripe.com/v1/charges" },
        NOW + 24 * 3600 * 1000,
      ),
    ).toMatchObject({
      decision: "DENY",
      code: "grant_expired",
      reason: "grant req_5c94d8 expired at 2026-05-02T17:43:04.000Z",
    });
  });

  test("glob characters in a granted resource or branch are literal", () => {
    const after = composeEffective(seedText(), [
      grant({ action: "git:push", resource: "org/re*po?[x]", branch: "feat/{a,b}" }),
    ]);
    expect(
      decide(after, { action: "git:push", resource: "org/re*po?[x]", branch: "feat/{a,b}" }).decision,
    ).toBe("ALLOW");
    expect(
      decide(after, { action: "git:push", resource: "org/repository?[x]", branch: "feat/{a,b}" }).decision,
    ).toBe("DENY");
  });

  test("a baseline without grants, with an empty list, or with a flow list still takes grants", () => {
    for (const base of [
      "project: p\nagents: [a]\n",
      "project: p\nagents: [a]\ngrants: []\n",
      "project: p\nagents: [a]\ngrants:\nsettings: {}\n",
      'project: p\nagents: [a]\ngrants: [{service: aws, actions: ["s3:Get"]}]\n',
    ]) {
      const after = composeEffective(base, [grant({ agent: "a", note: "n" })]);
      const r = parsePolicyFile({ file: "x", text: after });
      expect(r.ok, after).toBe(true);
      if (r.ok) expect(r.value.grants.map((g) => g.id)).toContain("req_5c94d8");
    }
  });

  test("several grants keep their order, so adding one more only adds lines", () => {
    const one = composeEffective(seedText(), [grant()]);
    const two = composeEffective(seedText(), [
      grant(),
      grant({ id: "req_second", action: "aws:s3:DeleteObject", resource: "arn:aws:s3:::x" }),
    ]);
    const added = policyDiff("p", one, two, "a", "b")
      .split("\n")
      .filter((l) => /^-(?!--)/.test(l));
    expect(added).toEqual([]);
  });
});

describe("a proposal's diff, from the lines around the added grant", () => {
  const bases = [
    seedText(),
    seedText().replace(/\n$/, ""),
    `${seedText()}\n# a trailing comment\n`,
    "project: p\nagents: [a]\n",
    "project: p\nagents: [a]\ngrants: []\n",
    "project: p\nagents: [a]\ngrants:\nsettings: {}\n",
    'project: p\nagents: [a]\ngrants: [{service: aws, actions: ["s3:Get"]}]\n',
    "project: p\nagents: [a]\ngrants:\n  - service: aws\n    actions: [s3:Get]\n",
    "grants:\n  - service: aws\n    actions: [s3:Get]\nproject: p\nagents: [a]\napprovers:\n  - id: x\n",
  ];
  const many = (n: number) =>
    Array.from({ length: n }, (_, i) =>
      grant({
        id: `req_${i}`,
        note: `access request req_${i} by billing-reconciler-1`,
        resource: `stripe.com/v1/charges/ch_${i}`,
        branch: i % 3 ? undefined : "main",
      }),
    );
  const proposed = grant({
    id: "req_new",
    note: "access request req_new (proposed)",
    resource: "x/new",
    expiresAt: NOW + 3 * 3600_000,
  });

  test.each(bases.flatMap((b, i) => [0, 1, 2, 7].map((n) => ({ i, n, b }))))(
    "baseline $i with $n grants: the same texts and the same diff as diffing them whole",
    ({ b, n }) => {
      const entries = many(n);
      const got = proposeEffective("p", b, entries, proposed, "revision 3", "with req_new");
      const before = composeEffective(b, entries);
      const after = composeEffective(b, [...entries, proposed]);
      expect(got.before).toBe(before);
      expect(got.after).toBe(after);
      expect(got.diff).toBe(policyDiff("p", before, after, "revision 3", "with req_new"));
    },
  );

  test("where lines repeat around the new grant, the diff still adds exactly its lines and applies", () => {
    // Same note and expiry in every grant: a whole-text diff may show the same insertion shifted
    // up (its last lines equal the previous grant's), an equally valid diff of the same change.
    const entries = [grant({ id: "req_1" }), grant({ id: "req_2" })];
    const got = proposeEffective("p", seedText(), entries, grant({ id: "req_3" }), "a", "b");
    expect(applyPatch(got.before, got.diff)).toBe(got.after);
    const changed = got.diff.split("\n").filter((l) => /^[-+](?!--|\+\+)/.test(l));
    expect(changed.every((l) => l.startsWith("+"))).toBe(true);
    expect(changed).toHaveLength(renderGrant(grant({ id: "req_3" }), "  ").split("\n").length - 1);
  });
});

describe("appending a remembered rule to a policy file", () => {
  const block = (indent: string) => `${indent}- id: r\n${indent}  service: aws\n${indent}  actions: [x]\n`;
  test.each([
    [
      "a block list, comments and a key after it kept",
      "project: p # c\ngrants:\n    # a\n    - service: git\n      actions: [read]\napprovers: []\n",
      "project: p # c\ngrants:\n    # a\n    - service: git\n      actions: [read]\n    - id: r\n      service: aws\n      actions: [x]\napprovers: []\n",
    ],
    [
      "no grants key: the key and the block at the end",
      "project: p\nagents: [a]",
      "project: p\nagents: [a]\ngrants:\n  - id: r\n    service: aws\n    actions: [x]\n",
    ],
    [
      "an empty list's key line becomes the block list's",
      "project: p\ngrants: []\nagents: [a]\n",
      "project: p\ngrants:\n  - id: r\n    service: aws\n    actions: [x]\nagents: [a]\n",
    ],
  ])("%s", (_what, text, want) => {
    expect(appendToFile(text, block)).toBe(want);
  });
  test.each([
    ["a flow list", "project: p\ngrants: [{service: git, actions: [read]}]\n"],
    ["a comment on an empty list's key line", "project: p\ngrants: [] # none yet\n"],
    ["CRLF line ends", "project: p\r\ngrants:\r\n  - service: git\r\n    actions: [read]\r\n"],
  ])("refused, not rewritten: %s", (_what, text) => {
    expect(appendToFile(text, block)).toBeUndefined();
  });
});

describe("scoping a request", () => {
  const denied = { action: "stripe:charges:read", resource: "stripe.com/v1/charges", branch: undefined };
  test("with a denial, the grant is the denied call; patterns are narrowed to it", () => {
    expect(scopeRequest({ action: "stripe:*", resource: "stripe.com/*" }, denied)).toEqual({
      ok: true,
      value: denied,
    });
    expect(scopeRequest({}, denied)).toEqual({ ok: true, value: denied });
  });
  test("with a denial, asking for something that does not cover it is refused", () => {
    const r = scopeRequest({ action: "stripe:refunds:create" }, denied);
    expect(r).toEqual({
      ok: false,
      error:
        'action: the request asks for "stripe:refunds:create" but the denied call was on "stripe:charges:read"',
    });
    expect(scopeRequest({ branch: "main" }, denied).ok).toBe(false);
  });
  test("without a denial, wildcards are refused", () => {
    expect(scopeRequest({ action: "stripe:*" }, undefined).ok).toBe(false);
    expect(scopeRequest({ action: "aws:s3:GetObject", resource: "arn:aws:s3:::b/*" }, undefined).ok).toBe(
      false,
    );
    expect(scopeRequest({ action: "aws:s3:GetObject", resource: "arn:aws:s3:::b/k" }, undefined)).toEqual({
      ok: true,
      value: { action: "aws:s3:GetObject", resource: "arn:aws:s3:::b/k", branch: undefined },
    });
  });
  test("escaping makes every glob character literal", () => {
    expect(escapeGlob("a*b?c[d]{e}\\f")).toBe("a\\*b\\?c\\[d\\]\\{e\\}\\\\f");
  });
});

describe("risk tiers", () => {
  const none = { risk: [] };
  test.each([
    ["stripe:charges:read", "low"],
    ["aws:s3:GetObject", "low"],
    ["git:read", "low"],
    ["aws:s3:PutObject", "medium"],
    ["git:push", "medium"],
    ["tools:Edit", "medium"],
    ["stripe:refunds:create", "high"],
    ["stripe:charges:create", "high"],
    ["aws:s3:DeleteObject", "high"],
    ["aws:iam:CreateAccessKey", "high"],
    ["tools:Bash", "high"],
    ["wise:transfers:create", "high"],
  ])("%s is %s", (action, tier) => {
    expect(classifyRisk(action, none)).toBe(tier);
  });
  test("project settings override the built-in tiers, first match first", () => {
    const settings = {
      risk: [
        { action: "tools:Bash", tier: "medium" as const },
        { action: "stripe:*", tier: "high" as const },
      ],
    };
    expect(classifyRisk("tools:Bash", settings)).toBe("medium");
    expect(classifyRisk("stripe:charges:read", settings)).toBe("high");
  });
});

describe("risk tiers cannot be talked down", () => {
  test.each([
    ["stripe:customers:update_search_index", "high"],
    ["aws:logs:CreateExportTask", "medium"],
    ["aws:dynamodb:ExportTableToPointInTime", "medium"],
    ["github:issues:list", "low"],
  ])("%s is %s", (action, tier) => {
    expect(classifyRisk(action, { risk: [] })).toBe(tier);
  });
});

describe("the request_access hint's body is accepted as it is", () => {
  test.each([
    [{ action: "x:y", resource: "", branch: undefined }],
    [{ action: "x:y", resource: "a[1]{2}", branch: undefined }],
    [{ action: "x:y", resource: "C:\\dir\\file", branch: "feat/{a}" }],
  ])("%j", (denied) => {
    const asked = { action: denied.action, resource: denied.resource, branch: denied.branch };
    expect(scopeRequest(asked, denied)).toEqual({ ok: true, value: denied });
  });
});
