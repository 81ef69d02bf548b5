import type { SimulatedCall } from "../../admin/policy-simulation.js";
import { loadConfig } from "../../config.js";
import {
  compilePolicies,
  evaluate,
  formatIssue,
  parsePolicySet,
  parseTimestamp,
} from "../../policy/index.js";
import { readPolicyFiles } from "../../policy-store/policy-files.js";
import { optional, type Parsed, print, required, snakeKeys, UsageError } from "../command.js";
import { type CliIo, termSafe, termSafeLines } from "../output.js";
import { withAdmin } from "../with-admin.js";

export async function policyValidate({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const target = positionals[0] ?? loadConfig(io.env).policiesDir;
  const sources = await readPolicyFiles(target);
  const set = parsePolicySet(sources);
  const issues = set.failures.flatMap((f) => f.issues);
  const ok = issues.length === 0;
  const text = ok
    ? `${sources.length} file${sources.length === 1 ? "" : "s"} valid: ${set.documents.map((d) => d.document.project).join(", ") || "no projects"}`
    : `${issues.map(formatIssue).join("\n")}\n${issues.length} problem${issues.length === 1 ? "" : "s"} in ${set.failures.length} file${set.failures.length === 1 ? "" : "s"}`;
  if (sources.length === 0 && !values.json)
    io.stderr.write(`butler: warning: no .yaml files in ${termSafe(target)}\n`);
  print(
    io,
    { ok, files: sources.map((s) => s.file), projects: set.documents.map((d) => d.document.project), issues },
    text,
    !!values.json,
  );
  return ok ? 0 : 1;
}

export async function policyCheck({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  if (typeof values.at === "string" && positionals.length === 0)
    return policyCheckStored({ values, positionals }, io);
  const set = parsePolicySet(await readPolicyFiles(positionals[0] ?? loadConfig(io.env).policiesDir));
  for (const f of set.failures)
    io.stderr.write(
      `butler: skipping ${termSafe(f.file)}: ${f.issues.length} problem(s); run butler policy validate\n`,
    );
  const params = paramsOption(values.params);
  let at = Date.now();
  if (typeof values.at === "string") {
    const t = parseTimestamp(values.at);
    if (!t.ok) throw new UsageError(`--at ${t.error}`);
    at = t.value;
  }
  const index = compilePolicies(set.documents.map((d) => ({ document: d.document, revision: 0 })));
  const d = evaluate(
    index,
    {
      agent: required(values, "agent"),
      project: required(values, "project"),
      action: required(values, "action"),
      resource: typeof values.resource === "string" ? values.resource : "",
      branch: optional(values, "branch"),
      params,
    },
    at,
  );
  print(io, snakeKeys(d), `${d.decision}: ${termSafe(d.reason)}`, !!values.json);
  return d.decision === "ALLOW" ? 0 : 1;
}

export async function policyShow({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const at = typeof values.at === "string" ? timeOption(values.at) : undefined;
  const p = await withAdmin(io, (ops) => ops.showPolicy(positionals[0]!, at));
  const header =
    p.at === undefined
      ? `# ${p.project}: revision ${p.revision}, from ${p.source}, stored ${p.createdAt}, sha256 ${p.contentHash}\n`
      : `# ${p.project} at ${p.at}: revision ${p.revision} (stored ${p.createdAt}, from ${p.source}), with the ${p.grantsInForce?.length ?? 0} grant(s) of Butler in force then\n`;
  print(io, snakeKeys(p), header + p.yaml, !!values.json);
  return 0;
}

/** An --at value as a Date, or a usage error naming it. */
function timeOption(text: string): Date {
  const t = parseTimestamp(text);
  if (!t.ok) throw new UsageError(`--at ${t.error}`);
  return new Date(t.value);
}

/** `policy check --at TIME` without a directory: decided by the revision stored then, with the grants in force then. */
async function policyCheckStored({ values }: Parsed, io: CliIo): Promise<number> {
  const at = timeOption(String(values.at));
  const project = required(values, "project");
  const d = await withAdmin(io, (ops) =>
    ops.checkPolicy(
      project,
      {
        agent: required(values, "agent"),
        action: required(values, "action"),
        resource: optional(values, "resource"),
        branch: optional(values, "branch"),
        params: paramsOption(values.params),
      },
      at,
    ),
  );
  print(
    io,
    snakeKeys(d),
    `${d.decision} at ${d.at} (revision ${d.revision_at}): ${termSafe(d.reason)}`,
    !!values.json,
  );
  return d.decision === "ALLOW" ? 0 : 1;
}

export async function policySimulate({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const [project, file] = positionals as [string, string];
  const { readFile } = await import("node:fs/promises");
  let yaml: string;
  try {
    yaml = await readFile(file, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const since = optional(values, "since");
  const r = await withAdmin(io, (ops) => ops.simulatePolicy(project, { yaml, file, since }));
  const call = (c: SimulatedCall) =>
    `  ${c.at}  ${c.agent}  ${c.action} ${c.resource || "(no resource)"}${c.branch ? ` @${c.branch}` : ""}  ×${c.count}  (was ${c.was}; ${c.event_id})`;
  const lines = [
    `${project}: ${file} against revision ${r.revision}, over ${r.calls} audited call(s) from ${r.since} to ${r.until}`,
    `would have allowed ${r.allowed_calls} call(s) the policy in force denied${r.refusals_lifted ? ` (${r.refusals_lifted} of them refused by parameter constraints or deny patterns)` : ""}`,
    ...r.allowed.map(call),
    `would have denied ${r.denied_calls} call(s) the policy in force allowed`,
    ...r.denied.map(call),
    ...(r.undetermined
      ? [
          `${r.undetermined} call(s) not decided again (their answer turns on parameters or on state the audit log does not keep)`,
        ]
      : []),
    ...r.revoked_grants.map((g) => `importing it would revoke grant ${g.id}: ${g.reason}`),
  ];
  print(io, r, termSafeLines(lines.join("\n")), !!values.json);
  return 0;
}

export async function policyHistory({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const revisions = await withAdmin(io, (ops) => ops.policyHistory(positionals[0]!));
  const text = revisions
    .map(
      (r) =>
        `${String(r.revision).padStart(4)}  ${r.createdAt}  ${r.contentHash.slice(0, 12)}  ${r.source}${r.cause ? `  (${r.cause})` : ""}${r.retired ? "  (retired)" : ""}`,
    )
    .join("\n");
  print(io, snakeKeys({ project: positionals[0], revisions }), text, !!values.json);
  return 0;
}

export async function policyDiff({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const [project, fromText, toText] = positionals as [string, string, string | undefined];
  const num = (s: string) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`'${s}' is not a revision number`);
    return Number(s);
  };
  const { createTwoFilesPatch } = await import("diff");
  const diff = await withAdmin(io, async (ops) => {
    const from = await ops.policyRevision(project, num(fromText));
    const to =
      toText === undefined
        ? await ops.policyRevision(project, (await ops.showPolicy(project)).revision)
        : await ops.policyRevision(project, num(toText));
    return {
      from: from.revision,
      to: to.revision,
      diff: createTwoFilesPatch(
        `${project}@${from.revision}`,
        `${project}@${to.revision}`,
        from.yaml,
        to.yaml,
        from.createdAt,
        to.createdAt,
      ),
    };
  });
  print(io, { project, ...diff }, diff.diff, !!values.json);
  return 0;
}

export async function policyReload({ values }: Parsed, io: CliIo): Promise<number> {
  const report = await withAdmin(io, (ops) => ops.reloadPolicies());
  const lines = [
    ...report.loaded.map((l) => `loaded    ${l.project} revision ${l.revision} from ${l.file}`),
    ...report.unchanged.map((l) => `unchanged ${l.project} revision ${l.revision}`),
    ...report.retired.map((l) => `retired   ${l.project} (revision ${l.revision}): its file is gone`),
    ...report.failed.flatMap((f) => [
      `REJECTED  ${f.file}${f.project ? ` (${f.project}: previous revision keeps serving)` : ""}`,
      ...f.issues.map((i) => `  ${i}`),
    ]),
  ];
  print(io, report, lines.join("\n") || "no policy files", !!values.json);
  return report.failed.length === 0 ? 0 : 1;
}

export async function providersValidate({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const config = loadConfig(io.env).providers;
  const dir = positionals[0] ?? config.dir;
  // The provider gateway is imported here only: no other command of this file needs it.
  const { loadProviders } = await import("../../providers/provider-gateway.js");
  // The MCP servers behind Butler too: their tool names must not collide with the providers'.
  const set = await loadProviders(dir, config.mcpDir);
  const issues = set.failures.flatMap((f) => f.issues);
  const ok = issues.length === 0;
  const names = [...set.providers.keys()];
  const text = ok
    ? `${names.length} provider${names.length === 1 ? "" : "s"} valid: ${names.join(", ") || "none"}`
    : `${issues.map(formatIssue).join("\n")}\n${issues.length} problem${issues.length === 1 ? "" : "s"} in ${set.failures.length} file${set.failures.length === 1 ? "" : "s"}`;
  print(io, { ok, providers: names, issues }, text, !!values.json);
  return ok ? 0 : 1;
}

/** --params as an object, or a usage error naming what is wrong. */
function paramsOption(text: unknown): Record<string, unknown> | undefined {
  if (typeof text !== "string") return undefined;
  let params: unknown;
  try {
    params = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--params is not valid JSON: ${(e as Error).message}`);
  }
  if (params === null || typeof params !== "object" || Array.isArray(params))
    throw new UsageError("--params must be a JSON object");
  return params as Record<string, unknown>;
}
