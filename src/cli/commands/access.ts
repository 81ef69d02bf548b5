import { args, type Command, optional, print, required, UsageError } from "../command.js";
import { type CliIo, termSafe } from "../output.js";
import { withAdmin } from "../with-admin.js";

async function agentsCreate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, { project: { type: "string" } }, [1, 1]);
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

async function agentsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, { project: { type: "string" } }, [0, 0]);
  const tokens = await withAdmin(io, (ops) => ops.listAgentTokens(optional(values, "project")));
  const text = tokens.length
    ? tokens
        .map(
          (t) =>
            `${t.tokenId}  ${t.project}  ${t.agent}  created ${t.createdAt}${t.revokedAt ? `  REVOKED ${t.revokedAt}` : "  active"}`,
        )
        .join("\n")
    : "no agent tokens";
  print(io, { tokens }, text, !!values.json);
  return 0;
}

async function agentsRevoke(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(
    argv,
    { project: { type: "string" }, token: { type: "string" } },
    [1, 1],
  );
  const sel = {
    agent: positionals[0]!,
    project: required(values, "project"),
    ...(typeof values.token === "string" ? { tokenId: values.token } : {}),
  };
  const revoked = await withAdmin(io, (ops) => ops.revokeAgentTokens(sel));
  print(io, { revoked }, `Revoked ${revoked.join(", ")}`, !!values.json);
  return 0;
}

async function approversToken(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
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

async function approversLink(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, { telegram: { type: "boolean" } }, [1, 1]);
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

async function auditorsToken(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const t = await withAdmin(io, (ops) => ops.createAuditorToken(positionals[0]!));
  print(
    io,
    t,
    `Auditor token ${t.token_id} for ${t.auditor}: signs in to the dashboard to read every project, decides nothing. It is shown only this once:\n${t.token}`,
    !!values.json,
  );
  return 0;
}

async function dashboardLink(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const l = await withAdmin(io, (ops) => ops.createDashboardLink(positionals[0]!));
  print(
    io,
    l,
    `Open this link to sign in as ${l.approver} (once, until ${l.expires_at}):\n${l.url}`,
    !!values.json,
  );
  return 0;
}

async function telegramSetWebhook(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, {}, [0, 0]);
  const r = await withAdmin(io, (ops) => ops.setTelegramWebhook());
  print(
    io,
    r,
    `Telegram will deliver updates to ${r.url} (with the secret from TELEGRAM_WEBHOOK_SECRET)`,
    !!values.json,
  );
  return 0;
}

export const accessCommands: Command[] = [
  {
    name: "agents create",
    usage: "<agent> --project P",
    summary: "make a bearer token for an agent (shown once)",
    admin: true,
    run: agentsCreate,
  },
  {
    name: "agents list",
    usage: "[--project P]",
    summary: "list tokens (never the tokens themselves)",
    admin: true,
    run: agentsList,
  },
  {
    name: "agents revoke",
    usage: "<agent> --project P [--token ID]",
    summary: "revoke an agent's tokens (or one of them)",
    admin: true,
    run: agentsRevoke,
  },
  {
    name: "approvers token",
    usage: "<approver>",
    summary: "make a bearer token for an approver (a person; shown once)",
    admin: true,
    run: approversToken,
  },
  {
    name: "approvers link",
    usage: "<approver> --telegram",
    summary: "a one-time deep link that binds the approver's Telegram account",
    admin: true,
    run: approversLink,
  },
  {
    name: "auditors token",
    usage: "<auditor>",
    summary: "make a read-only dashboard token for an auditor (shown once)",
    admin: true,
    run: auditorsToken,
  },
  {
    name: "dashboard link",
    usage: "<approver>",
    summary: "a one-time link that signs an approver in to the dashboard (15 minutes)",
    admin: true,
    run: dashboardLink,
  },
  {
    name: "telegram set-webhook",
    usage: "",
    summary: "register BUTLER_PUBLIC_URL/telegram/webhook (and its secret) with Telegram",
    admin: true,
    run: telegramSetWebhook,
  },
];
