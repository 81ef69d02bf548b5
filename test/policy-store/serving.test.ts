import { describe, expect, test } from "vitest";
import { createLogger } from "../../src/logger.js";
import { type GrantEntry, grantDefOf, grantProblem, renderGrant } from "../../src/policy/effective.js";
import { evaluate, parsePolicyFile } from "../../src/policy/index.js";
import type { GrantRow, RevisionHead } from "../../src/policy-store/revision-repo.js";
import { apply, applyChanges, compiledOf, createServing } from "../../src/policy-store/serving.js";

const NOW = Date.parse("2026-12-02T12:00:00Z");

const baseline = (project: string, extra = "") =>
  [
    `project: ${project}`,
    "agents: [agent-1, agent-2]",
    "grants:",
    "  - id: file-grant",
    "    service: stripe",
    "    actions: [balance:read]",
    extra,
  ].join("\n");

function head(project: string, n: number, opts: { retired?: boolean; text?: string } = {}): RevisionHead {
  const text = opts.text ?? baseline(project);
  return {
    project,
    revision: n,
    contentHash: `c-${text.length}`,
    source: `file:/p/${project}.yaml`,
    cause: n > 1 ? `grant:req_${n}` : null,
    baseline: text,
    effectiveHash: `h${n}`,
    retired: opts.retired ?? false,
    createdAt: "2026-12-02T00:00:00.000Z",
  };
}

function row(project: string, i: number, over: Partial<GrantRow> = {}): GrantRow {
  return {
    id: `req_${i}`,
    project,
    agent: "agent-1",
    action: "stripe:charges:read",
    resource: `stripe.com/v1/charges/ch_${i}`,
    branch: null,
    resourceGlob: null,
    approvedBy: ["maria"],
    createdAt: new Date(NOW - 60_000),
    expiresAt: new Date(NOW + 3600_000),
    revokedAt: null,
    revokedBy: null,
    expiryRecordedAt: null,
    addedRevision: 1,
    removedRevision: null,
    ...over,
  };
}

const rows = (project: string, n: number) => Array.from({ length: n }, (_, i) => row(project, i));
const call = (project: string, i: number, agent = "agent-1") => ({
  project,
  agent,
  action: "stripe:charges:read",
  resource: `stripe.com/v1/charges/ch_${i}`,
});

describe("an instance serves a project's file plus its grants, each compiled from its row", () => {
  test("every approval's revision allows its grant; a grant compiled once is reused, not compiled again", () => {
    const s = createServing(createLogger("silent"));
    for (let n = 1; n <= 40; n++) apply(s, head("billing", n), rows("billing", n));
    const p = s.current.projects.get("billing")!;
    expect(p.revision).toBe(40);
    expect(evaluate(s.current, call("billing", 39), NOW)).toMatchObject({
      decision: "ALLOW",
      grantId: "req_39",
    });
    expect(evaluate(s.current, call("billing", 40), NOW).decision).toBe("DENY");
    // Another agent of the project is not covered by agent-1's grant.
    expect(evaluate(s.current, call("billing", 3, "agent-2"), NOW).decision).toBe("DENY");
    const first = s.parts.get("billing")!.grants.get("req_0");
    apply(s, head("billing", 41), rows("billing", 41));
    expect(s.parts.get("billing")!.grants.get("req_0")).toBe(first);
    // The file's own grant is there too, and the file was parsed once for all 41 revisions.
    expect(s.current.projects.get("billing")!.document).toBe(p.document);
    expect(
      evaluate(s.current, { ...call("billing", 0), action: "stripe:balance:read", resource: "" }, NOW)
        .decision,
    ).toBe("ALLOW");
  });

  test("a revoked grant (no longer among the rows) stops allowing with the next revision", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 1), rows("billing", 3));
    expect(evaluate(s.current, call("billing", 1), NOW).decision).toBe("ALLOW");
    apply(
      s,
      head("billing", 2),
      rows("billing", 3).filter((r) => r.id !== "req_1"),
    );
    expect(evaluate(s.current, call("billing", 1), NOW).decision).toBe("DENY");
    expect(s.parts.get("billing")!.grants.has("req_1")).toBe(false);
  });

  test("an expired grant within retention denies with its expiry; a changed expiry is compiled again", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 1), [row("billing", 0, { expiresAt: new Date(NOW - 1000) })]);
    expect(evaluate(s.current, call("billing", 0), NOW)).toMatchObject({
      decision: "DENY",
      reason: expect.stringContaining("grant req_0 expired at"),
    });
    apply(s, head("billing", 2), [row("billing", 0, { expiresAt: new Date(NOW + 1000) })]);
    expect(evaluate(s.current, call("billing", 0), NOW).decision).toBe("ALLOW");
  });

  test("a new file version is parsed again, and a row whose id the file uses is the file's grant", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 1), rows("billing", 2));
    const before = s.current.projects.get("billing")!.document;
    const text = baseline(
      "billing",
      "  - id: req_0\n    service: stripe\n    actions: [charges:read]\n    resources: [stripe.com/v1/charges/ch_0]\n    agents: [agent-2]",
    );
    apply(s, head("billing", 2, { text }), rows("billing", 2));
    const after = s.current.projects.get("billing")!;
    expect(after.document).not.toBe(before);
    // req_0 is the file's (agent-2 only), not the row's (agent-1).
    expect(evaluate(s.current, call("billing", 0), NOW).decision).toBe("DENY");
    expect(evaluate(s.current, call("billing", 0, "agent-2"), NOW).decision).toBe("ALLOW");
    expect(evaluate(s.current, call("billing", 1), NOW).decision).toBe("ALLOW");
  });

  test("an older revision arriving late never replaces the newer one in force", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 5), rows("billing", 5));
    apply(s, head("billing", 3), rows("billing", 1));
    expect(s.current.projects.get("billing")!.revision).toBe(5);
    expect(evaluate(s.current, call("billing", 4), NOW).decision).toBe("ALLOW");
  });

  test("a retired project keeps nothing and serves nothing", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 1), rows("billing", 3));
    apply(s, head("billing", 2, { retired: true }), []);
    expect(s.parts.has("billing")).toBe(false);
    expect(s.current.projects.has("billing")).toBe(false);
  });

  test("a stored file that no longer parses denies everything for its project (fail closed)", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 1), rows("billing", 1));
    apply(s, head("billing", 2, { text: "project: billing\nagents: [[" }), rows("billing", 1));
    expect(s.current.projects.has("billing")).toBe(false);
    expect(evaluate(s.current, call("billing", 0), NOW).decision).toBe("DENY");
  });

  test("the revision in force is reused as is; another is compiled from its rows without displacing it", async () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 5), rows("billing", 5));
    let read = 0;
    const served = await compiledOf(s, head("billing", 5), async () => {
      read++;
      return [];
    });
    expect(served).toBe(s.current.projects.get("billing"));
    expect(read).toBe(0);
    const other = await compiledOf(s, head("billing", 6), async () => rows("billing", 6));
    expect(other?.revision).toBe(6);
    expect(s.current.projects.get("billing")!.revision).toBe(5);
    expect(s.parts.get("billing")!.grants.size).toBe(5);
  });
});

describe("a newer revision of the same file is served from the grants that changed since", () => {
  const RETAIN_FROM = NOW - 7 * 24 * 3600_000;

  test("an added grant allows and a removed one denies; the others stay compiled as they were", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 5), rows("billing", 5));
    const kept = s.parts.get("billing")!.grants.get("req_0");
    const added = row("billing", 5, { addedRevision: 6 });
    const removed = row("billing", 1, { revokedAt: new Date(NOW), removedRevision: 6 });
    expect(applyChanges(s, head("billing", 6), 5, [added, removed], RETAIN_FROM)).toBe(true);
    expect(s.current.projects.get("billing")!.revision).toBe(6);
    expect(evaluate(s.current, call("billing", 5), NOW).decision).toBe("ALLOW");
    expect(evaluate(s.current, call("billing", 1), NOW).decision).toBe("DENY");
    expect(evaluate(s.current, call("billing", 2), NOW).decision).toBe("ALLOW");
    expect(s.parts.get("billing")!.grants.get("req_0")).toBe(kept);
    expect(s.parts.get("billing")!.revision).toBe(6);
  });

  test("changes since an older revision than the one served apply too (each grant comes and goes once)", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 5), rows("billing", 5));
    // Read as changes since 3: rows 3 and 4 again (already there), and a new one.
    const changed = [row("billing", 3), row("billing", 4), row("billing", 7, { addedRevision: 6 })];
    expect(applyChanges(s, head("billing", 6), 3, changed, RETAIN_FROM)).toBe(true);
    expect(s.parts.get("billing")!.grants.size).toBe(6);
    expect(evaluate(s.current, call("billing", 7), NOW).decision).toBe("ALLOW");
  });

  test("not applicable when what serves is of another file or older than the changes read", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 5), rows("billing", 5));
    const otherFile = head("billing", 6, {
      text: baseline("billing", "  - service: git\n    actions: [push]"),
    });
    expect(applyChanges(s, otherFile, 5, [], RETAIN_FROM)).toBe(false);
    expect(applyChanges(s, head("billing", 8), 6, [], RETAIN_FROM)).toBe(false);
    expect(s.current.projects.get("billing")!.revision).toBe(5);
    // An older revision than the one served is a no-op, not a fallback.
    expect(applyChanges(s, head("billing", 4), 3, [], RETAIN_FROM)).toBe(true);
    expect(s.current.projects.get("billing")!.revision).toBe(5);
  });

  test("an expired grant leaves once its retention is over, as a full read would leave it out", () => {
    const s = createServing(createLogger("silent"));
    apply(s, head("billing", 1), [row("billing", 0, { expiresAt: new Date(NOW - 1000) }), row("billing", 1)]);
    expect(applyChanges(s, head("billing", 2), 1, [], NOW - 500)).toBe(true);
    expect(s.parts.get("billing")!.grants.has("req_0")).toBe(false);
    expect(s.parts.get("billing")!.grants.has("req_1")).toBe(true);
  });
});

describe("a grant from its row is exactly the grant its YAML lines say", () => {
  const entries: GrantEntry[] = [
    {
      id: "req_a",
      agent: "agent-1",
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges/ch_1",
      branch: undefined,
      expiresAt: NOW + 1000,
      note: "n",
      approvedBy: ["maria", "alex"],
    },
    {
      id: "req_b",
      agent: "agent-2",
      action: "git:push",
      resource: "github.com/acme/app*[x]?{y}",
      branch: "feat/*",
      expiresAt: NOW + 1500,
      note: "n\nx",
      approvedBy: [],
    },
    {
      id: "req_c",
      agent: "agent-1",
      action: "tools:run",
      resource: "",
      branch: undefined,
      expiresAt: NOW + 2000,
      note: "n",
    },
    {
      id: "req_d",
      agent: "agent-1",
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::b/k\\ey",
      branch: "main",
      expiresAt: NOW + 2500,
      note: "n",
      approvedBy: ["maria"],
    },
  ];

  test.each(entries)("$id", (e) => {
    const text = `project: p\nagents: [agent-1, agent-2]\ngrants:\n${renderGrant(e, "  ")}`;
    const parsed = parsePolicyFile({ file: "p.yaml", text });
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(grantDefOf(e)).toEqual(parsed.value.grants[0]);
    expect(grantProblem("p", e)).toBeUndefined();
  });

  test("a grant that would not load is named with its problem", () => {
    const bad = { ...entries[0]!, agent: "not an agent name!" };
    expect(grantProblem("p", bad)?.message).toBeTruthy();
  });
});
