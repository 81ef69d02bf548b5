import { describe, expect, test } from "vitest";
import { createLogger } from "../../src/logger.js";
import type { PolicyRevision } from "../../src/policy-store/revision-repo.js";
import { apply, compiledOf, createServing } from "../../src/policy-store/serving.js";

/** A stored revision of `project` whose effective policy grants `grants` resources. */
function revision(project: string, n: number, grants: number, retired = false): PolicyRevision {
  const yaml = [
    `project: ${project}`,
    "agents: [agent-1]",
    "grants:",
    ...Array.from({ length: grants }, (_, i) =>
      [
        `  - id: g${i}`,
        "    service: stripe",
        "    actions: [charges:read]",
        `    resources: [stripe.com/v1/charges/ch_${i}]`,
      ].join("\n"),
    ),
  ].join("\n");
  return {
    project,
    revision: n,
    contentHash: "c",
    source: `file:/p/${project}.yaml`,
    cause: n > 1 ? `grant:req_${n}` : null,
    yaml,
    baseline: yaml,
    effectiveHash: `h${n}`,
    retired,
    createdAt: "2026-12-02T00:00:00.000Z",
  };
}

describe("what an instance keeps of the revisions it served", () => {
  test("one parsed document per project however many revisions came (an approval's each), the newest", () => {
    const s = createServing(createLogger("silent"));
    for (let n = 1; n <= 40; n++) {
      apply(s, revision("billing", n, n));
      apply(s, revision("support", n, 1));
    }
    expect(s.parsed.size).toBe(2);
    expect(s.parsed.get("billing")?.revision).toBe(40);
    expect(s.current.projects.get("billing")?.revision).toBe(40);
    expect(s.current.projects.get("billing")?.document.grants).toHaveLength(40);
  });

  test("an older revision is still compiled on request, without displacing the one in force", () => {
    const s = createServing(createLogger("silent"));
    for (let n = 1; n <= 5; n++) apply(s, revision("billing", n, n));
    const old = compiledOf(s, revision("billing", 2, 2));
    expect(old?.revision).toBe(2);
    expect(old?.document.grants).toHaveLength(2);
    expect(s.parsed.get("billing")?.revision).toBe(5);
    // The revision in force is the one served, not compiled again.
    expect(compiledOf(s, revision("billing", 5, 5))).toBe(s.current.projects.get("billing"));
  });

  test("a retired project keeps nothing and serves nothing", () => {
    const s = createServing(createLogger("silent"));
    apply(s, revision("billing", 1, 3));
    apply(s, revision("billing", 2, 3, true));
    expect(s.parsed.has("billing")).toBe(false);
    expect(s.current.projects.has("billing")).toBe(false);
  });
});
