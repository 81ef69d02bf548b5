/** The generated policy and calls of the decision benchmark (see run.ts). */
import { type Call, type ProjectInput, parsePolicyFile } from "../src/policy/index.js";

export function projectYaml(p: number): string {
  const lines = [`project: proj-${p}`, "agents:"];
  for (let a = 0; a < 5; a++)
    lines.push(`  - name: agent-${a}`, `    roles: [${a % 2 ? "writer" : "reader"}]`);
  lines.push("grants:");
  for (let g = 0; g < 20; g++) {
    switch (g % 5) {
      case 0:
        lines.push(
          "  - service: aws",
          `    actions: [s3:GetObject, s3:ListBucket]`,
          `    resources: ["arn:aws:s3:::bucket-${p}-${g}/*"]`,
        );
        break;
      case 1:
        lines.push(
          "  - service: git",
          "    actions: [read, push]",
          `    resources: ["org/repo-${p}-${g}"]`,
          '    branches: ["feature/*", "fix-?"]',
          "    roles: [writer]",
        );
        break;
      case 2:
        lines.push(
          "  - service: stripe",
          `    actions: ["charges:*"]`,
          `    resources: ["stripe.com/v1/charges*"]`,
          `    expires: 2026-${g % 2 ? "12" : "01"}-01T00:00:00Z`,
        );
        break;
      case 3:
        lines.push(
          "  - service: stripe",
          "    actions: [refunds:create]",
          "    roles: [writer]",
          "    constraints:",
          "      amount: { max: 5000 }",
          "      currency: { in: [EUR, USD] }",
        );
        break;
      case 4:
        lines.push(
          "  - service: tools",
          `    actions: [Read, Edit, Bash${g}]`,
          '    deny: ["rm -rf", "git push --force"]',
        );
        break;
    }
  }
  return `${lines.join("\n")}\n`;
}

/** The parsed documents of `count` generated projects (compile them for an index). */
export function parseDocs(count: number): ProjectInput[] {
  const docs = [];
  for (let p = 0; p < count; p++) {
    const r = parsePolicyFile({ file: `proj-${p}.yaml`, text: projectYaml(p) });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    docs.push({ document: r.value, revision: 1 });
  }
  return docs;
}

/** The calls without repeats (same agent, project, action, resource, branch and parameters). */
export function distinctCalls(calls: readonly Call[]): Call[] {
  const seen = new Set<string>();
  return calls.filter((c) => {
    const key = JSON.stringify([
      c.agent,
      c.project,
      c.action,
      c.resource,
      c.branch ?? null,
      c.params ?? null,
    ]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function makeCalls(projects: number, n: number): Call[] {
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const calls: Call[] = [];
  // Every call has the same shape, as the gateway builds them (branch and params may be undefined).
  const call = (c: Partial<Call> & Pick<Call, "agent" | "project" | "action" | "resource">): Call => ({
    agent: c.agent,
    project: c.project,
    action: c.action,
    resource: c.resource,
    branch: c.branch,
    params: c.params,
  });
  for (let i = 0; i < n; i++) {
    const p = Math.floor(rnd() * projects);
    const agent = `agent-${Math.floor(rnd() * 6)}`; // agent-5 is not in any project
    const g = Math.floor(rnd() * 20);
    const project = `proj-${p}`;
    switch (i % 6) {
      case 0:
        calls.push(
          call({
            agent,
            project,
            action: "aws:s3:GetObject",
            resource: `arn:aws:s3:::bucket-${p}-${g - (g % 5)}/2026/05/ledger.csv`,
          }),
        );
        break;
      case 1:
        calls.push(
          call({
            agent,
            project,
            action: "git:push",
            resource: `org/repo-${p}-${g - (g % 5) + 1}`,
            branch: rnd() < 0.5 ? "feature/x" : "main",
          }),
        );
        break;
      case 2:
        calls.push(
          call({ agent, project, action: "stripe:charges:read", resource: "stripe.com/v1/charges" }),
        );
        break;
      case 3:
        calls.push(
          call({
            agent,
            project,
            action: "stripe:refunds:create",
            resource: "stripe.com/v1/refunds",
            params: { amount: rnd() < 0.5 ? 500 : 7000, currency: "EUR" },
          }),
        );
        break;
      case 4:
        calls.push(
          call({
            agent,
            project,
            action: "tools:Bash4",
            resource: "",
            params: { command: rnd() < 0.5 ? "ls -la" : "rm -rf /" },
          }),
        );
        break;
      default:
        calls.push(call({ agent, project, action: "gcp:storage:get", resource: "x" }));
    }
  }
  return calls;
}
