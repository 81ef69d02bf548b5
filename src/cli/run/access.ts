import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { optional, type Parsed, print, required, snakeKeys, UsageError } from "../command.js";
import { type CliIo, termSafe, termSafeLines } from "../output.js";
import { withAdmin } from "../with-admin.js";

export async function agentsCreate({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const project = required(values, "project");
  const t = await withAdmin(io, (ops) => ops.createAgentToken(positionals[0]!, project));
  for (const w of t.warnings) io.stderr.write(`butler: warning: ${termSafe(w)}\n`);
  print(
    io,
    {
      token: t.token,
      token_id: t.tokenId,
      agent: t.agent,
      project: t.project,
      created_at: t.createdAt,
      warnings: t.warnings,
    },
    `Token ${t.tokenId} for agent ${t.agent} in ${t.project}. It is shown only this once:\n${t.token}`,
    !!values.json,
  );
  return 0;
}

export async function agentsList({ values }: Parsed, io: CliIo): Promise<number> {
  const tokens = await withAdmin(io, (ops) => ops.listAgentTokens(optional(values, "project")));
  const text = tokens.length
    ? tokens
        .map(
          (t) =>
            `${t.tokenId}  ${t.project}  ${t.agent}  created ${t.createdAt}${t.revokedAt ? `  REVOKED ${t.revokedAt}` : "  active"}`,
        )
        .join("\n")
    : "no agent tokens";
  print(io, snakeKeys({ tokens }), text, !!values.json);
  return 0;
}

export async function agentsShow({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const h = await withAdmin(io, (ops) => ops.agentHealth(positionals[0]!, required(values, "project")));
  const pact = h.pact as {
    purpose: string;
    intended_tools: string[] | null;
    intended_operations: string[] | null;
    on_violation: string;
  } | null;
  const lines = [
    `${h.agent} in ${h.project}: health ${h.health}/100 (${h.violations_30d} pact violation(s) in the last 30 days)`,
    pact
      ? `pact (${h.pact_source === "api" ? `set through the API, revision ${h.pact_revision}` : "from the policy file"}): ${termSafe(pact.purpose)}; tools ${termSafe(pact.intended_tools?.join(", ") ?? "any")}; operation groups ${termSafe(pact.intended_operations?.join(", ") ?? "any")}; on violation: ${pact.on_violation}`
      : "pact: none (the project's policy has no pact for this agent)",
    `trust: ${h.trust ?? "not used in this project"}`,
    ...h.drift.map(
      (d) =>
        `drift (${d.dimension}): ${d.level} at ${d.computed_at} (Jaccard ${String(d.numbers.jaccard)}, Jensen-Shannon ${String(d.numbers.jensen_shannon)})`,
    ),
    ...h.recent_violations.map((v) => `  ${v.ts}  ${v.event_id}  ${termSafe(v.reason ?? "")}`),
  ];
  print(io, h, lines.join("\n"), !!values.json);
  return 0;
}

export async function agentsPactSet({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  let text = "";
  for await (const chunk of io.stdin ?? process.stdin) {
    text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    if (text.length > 64 * 1024) throw new UsageError("the pact on standard input is longer than 64 KiB");
  }
  let pact: unknown;
  try {
    pact = parseYaml(text);
  } catch (e) {
    throw new UsageError(
      `the pact on standard input is not YAML or JSON: ${(e as Error).message.split("\n")[0]}`,
    );
  }
  if (pact === null || typeof pact !== "object" || Array.isArray(pact))
    throw new UsageError(
      "send the pact on standard input as a mapping, e.g. purpose: ..., intended_tools: [...]",
    );
  const r = await withAdmin(io, (ops) => ops.setPact(positionals[0]!, required(values, "project"), pact));
  print(io, r, `Pact of ${r.agent} in ${r.project} set: revision ${r.revision}`, !!values.json);
  return 0;
}

export async function agentsPactShow({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const h = await withAdmin(io, (ops) => ops.agentHealth(positionals[0]!, required(values, "project")));
  const shown = {
    agent: h.agent,
    project: h.project,
    pact: h.pact,
    source: h.pact_source,
    revision: h.pact_revision,
  };
  // What is not set is left out, so that the output can be given to `agents pact set` as it is.
  const set = h.pact ? Object.fromEntries(Object.entries(h.pact).filter(([, v]) => v !== null)) : null;
  const text = set
    ? `# the pact of ${termSafe(h.agent)} in ${termSafe(h.project)}, ${h.pact_source === "api" ? `set through the API (revision ${h.pact_revision})` : "from the policy file"}\n${termSafeLines(stringifyYaml(set)).trimEnd()}`
    : `${termSafe(h.agent)} in ${termSafe(h.project)} has no pact`;
  print(io, shown, text, !!values.json);
  return 0;
}

export async function agentsPactClear({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const r = await withAdmin(io, (ops) => ops.setPact(positionals[0]!, required(values, "project"), null));
  print(
    io,
    r,
    `Pact of ${r.agent} in ${r.project} handed back to the policy: revision ${r.revision}`,
    !!values.json,
  );
  return 0;
}

export async function agentsRevoke({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const sel = {
    agent: positionals[0]!,
    project: required(values, "project"),
    ...(typeof values.token === "string" ? { tokenId: values.token } : {}),
  };
  const revoked = await withAdmin(io, (ops) => ops.revokeAgentTokens(sel));
  print(io, { revoked }, `Revoked ${revoked.join(", ")}`, !!values.json);
  return 0;
}

export async function approversToken({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const t = await withAdmin(io, (ops) => ops.createApproverToken(positionals[0]!));
  for (const w of t.warnings) io.stderr.write(`butler: warning: ${termSafe(w)}\n`);
  print(
    io,
    t,
    `Approver token ${t.token_id} for ${t.approver} (approver of: ${t.projects.join(", ") || "no project yet"}). It is shown only this once:\n${t.token}`,
    !!values.json,
  );
  return 0;
}

export async function approversLink({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  if (!values.telegram) throw new UsageError("say which platform to link: --telegram");
  const l = await withAdmin(io, (ops) => ops.createTelegramLink(positionals[0]!));
  print(
    io,
    l,
    `Send this link to ${l.approver}; opening it binds their Telegram account (once, until ${l.expires_at}):\n${l.url}`,
    !!values.json,
  );
  return 0;
}

export async function auditorsToken({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const t = await withAdmin(io, (ops) => ops.createAuditorToken(positionals[0]!));
  print(
    io,
    t,
    `Auditor token ${t.token_id} for ${t.auditor}: signs in to the dashboard to read every project, decides nothing. It is shown only this once:\n${t.token}`,
    !!values.json,
  );
  return 0;
}

export async function dashboardLink({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const l = await withAdmin(io, (ops) => ops.createDashboardLink(positionals[0]!));
  print(
    io,
    l,
    `Open this link to sign in as ${l.approver} (once, until ${l.expires_at}):\n${l.url}`,
    !!values.json,
  );
  return 0;
}

export async function telegramSetWebhook({ values }: Parsed, io: CliIo): Promise<number> {
  const r = await withAdmin(io, (ops) => ops.setTelegramWebhook());
  if (!r.url.startsWith("https://"))
    io.stderr.write(
      `butler: warning: ${termSafe(r.url)} is not an https:// URL: Telegram delivers updates to https:// webhooks only (set BUTLER_PUBLIC_URL to the server's public https:// address); only a stand-in of the Telegram API accepts it\n`,
    );
  print(
    io,
    r,
    `Telegram will deliver updates to ${r.url} (with the secret from TELEGRAM_WEBHOOK_SECRET)`,
    !!values.json,
  );
  return 0;
}
