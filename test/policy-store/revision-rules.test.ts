import { describe, expect, test } from "vitest";
import { compileProject, parsePolicyFile } from "../../src/policy/index.js";
import type { GrantRow } from "../../src/policy-store/revision-repo.js";
import { composeChecked, spliceGrants, toEntry } from "../../src/policy-store/revision-rules.js";

const NOW = new Date("2026-05-01T10:00:00Z");
const FILE = "ops.yaml";

const BASELINE = `project: ops
agents: [deployer, builder]
grants:
  - id: g_read
    service: aws
    actions: [s3:GetObject]
  - id: g_put
    service: aws
    actions: [s3:PutObject]
    resources: ["arn:aws:s3:::ops/*"]
    deny: ["arn:aws:s3:::ops/secret/*"]
settings:
  never_grant: ["aws:iam:*"]
`;

function document(text: string) {
  const r = parsePolicyFile({ file: FILE, text });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return { doc: r.value, compiled: compileProject({ document: r.value, revision: 2 }) };
}

const row = (over: Partial<GrantRow>): GrantRow =>
  ({
    id: "req_aaaaaaaaaaaaaaaa",
    agent: "deployer",
    project: "ops",
    action: "aws:s3:ListBucket",
    resource: "arn:aws:s3:::ops",
    branch: null,
    resourceGlob: null,
    expiresAt: new Date(NOW.getTime() + 3600_000),
    approvedBy: ["jordan"],
    createdAt: NOW,
    revokedAt: null,
    revokedBy: null,
    expiryRecordedAt: null,
    addedRevision: 1,
    removedRevision: null,
    ...over,
  }) satisfies GrantRow;

/** A new baseline decides, without a database, which grants in force it keeps. */
describe("splicing the grants in force into a new baseline", () => {
  const { doc, compiled } = document(BASELINE);

  test.each([
    ["an ordinary grant stays", row({}), undefined],
    [
      "an agent no longer listed loses its grant",
      row({ agent: "gone" }),
      "agent gone is no longer listed in ops.yaml",
    ],
    [
      "an action the file now never grants is revoked",
      row({ action: "aws:iam:CreateUser", resource: "" }),
      "aws:iam:CreateUser is now never granted in ops (settings.never_grant in ops.yaml)",
    ],
    [
      "a grant that would bypass a constrained grant's deny patterns is revoked",
      row({ action: "aws:s3:PutObject", resource: "arn:aws:s3:::ops/report.csv" }),
      "grant g_put in ops.yaml now limits aws:s3:PutObject on arn:aws:s3:::ops/report.csv with parameter constraints or deny patterns, which this grant would bypass",
    ],
    [
      "an expired grant of a listed agent is kept (it only explains denials)",
      row({ action: "aws:iam:CreateUser", resource: "", expiresAt: new Date(NOW.getTime() - 1) }),
      undefined,
    ],
  ])("%s", (_name, g, reason) => {
    const { revoked, kept } = spliceGrants([g], doc, compiled, FILE, NOW);
    expect(revoked.map((r) => r.reason)).toEqual(reason ? [reason] : []);
    expect(kept).toEqual(reason ? [] : [g]);
  });

  test("a grant whose id the file already uses is neither revoked nor spliced in again", () => {
    const { doc: withCopy, compiled: c } = document(
      BASELINE.replace(
        "settings:",
        "  - id: req_bbbbbbbbbbbbbbbb\n    service: aws\n    actions: [s3:ListBucket]\n    agents: [deployer]\nsettings:",
      ),
    );
    const g = row({ id: "req_bbbbbbbbbbbbbbbb" });
    expect(spliceGrants([g], withCopy, c, FILE, NOW)).toEqual({ revoked: [], kept: [] });
  });

  test("the kept grants are written into the effective policy, which loads", () => {
    const g = row({});
    const r = composeChecked(BASELINE, [g], FILE);
    if (!r.ok) throw new Error(r.error.message);
    expect(r.value.startsWith(BASELINE.split("settings:")[0]!)).toBe(true);
    expect(r.value).toContain(g.id);
    expect(toEntry(g)).toMatchObject({
      id: g.id,
      note: `access request ${g.id} by deployer`,
      branch: undefined,
    });
  });

  test("with no grants the effective policy is the baseline itself", () => {
    expect(composeChecked(BASELINE, [], FILE)).toEqual({ ok: true, value: BASELINE });
  });
});
