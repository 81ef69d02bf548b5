import { constants } from "node:fs";
import { open, rm } from "node:fs/promises";
import { userInfo } from "node:os";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { createTwoFilesPatch } from "diff";
import type { AdminOps } from "../admin/admin-service.js";
import { type AuditLine, ChainVerifier, canonicalJson } from "../audit/chain.js";
import {
  AnchoredVerifier,
  type AnchorProblem,
  type AnchorReport,
  CHECKPOINT_TYPE,
  generateCheckpointKey,
  type VerifyingKey,
} from "../audit/checkpoint.js";
import { parseExportLine } from "../audit/export-line.js";
import { story } from "../audit/story.js";
import type { AccessRequestView } from "../butler/butler-service.js";
import { systemClock } from "../clock.js";
import { type Config, listenUrl, loadConfig } from "../config.js";
import {
  acquireDataDirLock,
  ensureDataDir,
  readAdminToken,
  readServerInfo,
  tightenDataDir,
} from "../data-dir.js";
import { openDatabase } from "../db/client.js";
import { migrate } from "../db/migrate.js";
import { AppError, isAppError } from "../errors.js";
import { createLogger } from "../logger.js";
import { startServer } from "../main.js";
import { compilePolicies, evaluate, formatIssue, parsePolicySet, parseTimestamp } from "../policy/index.js";
import { readPolicyFiles } from "../policy-store/policy-files.js";
import { loadProviders } from "../providers/provider-gateway.js";
import { configuredSecrets, createSecrets, type Secrets } from "../secrets.js";
import { createServices } from "../services.js";
import { anchorLines, readCheckpointFiles, readPublicKeys } from "./audit-anchors.js";
import { httpAdmin } from "./http-admin.js";
import { jsonlLines } from "./jsonl.js";
import { type CliIo, markOutputClosed, OutputClosed, termSafe, termSafeLines, writeOut } from "./output.js";

const USAGE = `butler: a deny-by-default governance gateway for AI agents

Usage: butler <command> [options]          (every command accepts --json and --help)

  serve                                    run the gateway (npm start)
  db migrate                               apply pending database migrations
  policy validate [dir|file]               check policy files; exit 1 on any problem
  policy check --agent A --project P --action X [--resource R] [--branch B] [--params JSON] [--at TIME] [dir]
                                           decide one call offline from policy files (exit 0 ALLOW, 1 DENY)
  policy show <project>                    print the policy in force as YAML
  policy history <project>                 list the stored revisions of a project's policy
  policy diff <project> <from> [<to>]      diff two revisions (default: to the newest)
  policy reload                            import the policies directory now
  providers validate [dir]                 check provider specs (providers/*.yaml); exit 1 on any problem
  agents create <agent> --project P        make a bearer token for an agent (shown once)
  agents list [--project P]                list tokens (never the tokens themselves)
  agents revoke <agent> --project P [--token ID]
                                           revoke an agent's tokens (or one of them)
  approvers token <approver>               make a bearer token for an approver (a person; shown once)
  approvers link <approver> --telegram     a one-time deep link that binds the approver's Telegram account
  auditors token <auditor>                 make a read-only dashboard token for an auditor (shown once)
  dashboard link <approver>                a one-time link that signs an approver in to the dashboard (15 minutes)
  telegram set-webhook                     register BUTLER_PUBLIC_URL/telegram/webhook (and its secret) with Telegram
  requests list [--status S] [--project P] list access requests, newest first
  requests show <id>                       one request with its proposed policy diff
  requests approve <id> --approver A [--ttl T]
                                           record an approver's approval (optionally for a shorter TTL)
  requests deny <id> --approver A [--reason TEXT]
                                           record an approver's denial
  grants list [--project P] [--all]        grants in force (--all: also expired and revoked)
  grants revoke <id> [--reason TEXT]       revoke a grant at once
  credentials set <NAME>                   store a provider credential, read from standard input, encrypted
  credentials list                         stored credentials: names and dates, never values
  credentials delete <NAME>                remove a stored credential
  audit verify [--checkpoints FILE]... [--public-key PEM]...
                                           recompute the hash chain and check it against signed
                                           checkpoints (in the log, and in FILE); exit 1 on any problem
  audit verify-export <jsonl> [--public-key PEM]... [--checkpoints FILE]...
                                           check an export offline: its hash chain and checkpoints
  audit keygen --out FILE                  make an Ed25519 key pair for signing checkpoints
  audit export [--agent A] [--project P] [--since TIME]
                                           stream the audit log as JSONL
  audit replay --agent A [--project P]     tell one agent's session as a story

While a server runs, commands go through its admin API (found via BUTLER_DATA_DIR/server.json,
or BUTLER_URL with BUTLER_ADMIN_TOKEN); otherwise they open the database directly.
`;

class UsageError extends Error {}

/** Runs one CLI command. Returns the process exit code (0 ok, 1 failed or denied, 2 usage error). */
export async function main(
  argv: string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  const [command, sub, ...rest] = argv;
  const json = argv.includes("--json");
  if (io.stdout === process.stdout) {
    process.stdout.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") markOutputClosed();
    });
  }
  try {
    if (!command || command === "--help" || command === "-h" || command === "help") {
      io.stdout.write(USAGE);
      return command ? 0 : 2;
    }
    if (argv.includes("--help") || argv.includes("-h")) {
      io.stdout.write(USAGE);
      return 0;
    }
    switch (command) {
      case "serve":
        return await serve(
          [sub, ...rest].filter((x): x is string => x !== undefined),
          io,
        );
      case "db":
        if (sub === "migrate") return await dbMigrate(rest, io);
        break;
      case "policy":
        switch (sub) {
          case "validate":
            return await policyValidate(rest, io);
          case "check":
            return await policyCheck(rest, io);
          case "show":
            return await policyShow(rest, io);
          case "history":
            return await policyHistory(rest, io);
          case "diff":
            return await policyDiff(rest, io);
          case "reload":
            return await policyReload(rest, io);
        }
        break;
      case "agents":
        switch (sub) {
          case "create":
            return await agentsCreate(rest, io);
          case "list":
            return await agentsList(rest, io);
          case "revoke":
            return await agentsRevoke(rest, io);
        }
        break;
      case "providers":
        if (sub === "validate") return await providersValidate(rest, io);
        break;
      case "credentials":
        if (sub === "set") return await credentialsSet(rest, io);
        if (sub === "list") return await credentialsList(rest, io);
        if (sub === "delete") return await credentialsDelete(rest, io);
        break;
      case "approvers":
        if (sub === "token") return await approversToken(rest, io);
        if (sub === "link") return await approversLink(rest, io);
        break;
      case "auditors":
        if (sub === "token") return await auditorsToken(rest, io);
        break;
      case "dashboard":
        if (sub === "link") return await dashboardLink(rest, io);
        break;
      case "telegram":
        if (sub === "set-webhook") return await telegramSetWebhook(rest, io);
        break;
      case "requests":
        switch (sub) {
          case "list":
            return await requestsList(rest, io);
          case "show":
            return await requestsShow(rest, io);
          case "approve":
          case "deny":
            return await requestsReview(sub, rest, io);
        }
        break;
      case "grants":
        switch (sub) {
          case "list":
            return await grantsList(rest, io);
          case "revoke":
            return await grantsRevoke(rest, io);
        }
        break;
      case "audit":
        switch (sub) {
          case "verify":
            return await auditVerify(rest, io);
          case "verify-export":
            return await auditVerifyExport(rest, io);
          case "keygen":
            return await auditKeygen(rest, io);
          case "export":
            return await auditExport(rest, io);
          case "replay":
            return await auditReplay(rest, io);
        }
        break;
    }
    const words = [command, sub].filter((w): w is string => !!w && !w.startsWith("-"));
    throw new UsageError(`unknown command: butler ${words.join(" ")}`);
  } catch (e) {
    // The reader of a streamed export went away: that is how `| head` works, not a failure.
    if (e instanceof OutputClosed) return 0;
    const usage =
      e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith?.("ERR_PARSE_ARGS");
    // Unexpected errors show their first line only: a driver error's later lines can hold query
    // parameters, which are nobody's business in a terminal.
    // Whatever an error carries, no configured secret and no URL credential is printed.
    const message = cliSecrets(io.env).redact(
      usage || isAppError(e)
        ? (e as Error).message
        : `unexpected error: ${String((e as Error).message ?? e).split("\n")[0]}`,
    );
    if (json)
      io.stdout.write(
        `${JSON.stringify({ error: { code: isAppError(e) ? e.code : usage ? "USAGE" : "INTERNAL", message } })}\n`,
      );
    io.stderr.write(`butler: ${termSafeLines(message)}\n${usage ? "Run butler --help for usage.\n" : ""}`);
    return usage ? 2 : 1;
  }
}

/** The configuration's secrets, for redacting what the CLI prints (none when it does not load). */
function cliSecrets(env: CliIo["env"]): Secrets {
  try {
    return createSecrets(configuredSecrets(loadConfig(env)));
  } catch {
    return createSecrets();
  }
}

function args(
  argv: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
  positionals: [min: number, max: number],
) {
  const parsed = parseArgs({
    args: argv,
    options: { ...options, json: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  const [min, max] = positionals;
  if (parsed.positionals.length < min) throw new UsageError("missing argument");
  if (parsed.positionals.length > max)
    throw new UsageError(`unexpected argument '${parsed.positionals[max]}'`);
  return parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] };
}

/** Prints a command's result: JSON, or text made safe for a terminal (policy files and agents write some of it). */
function print(io: CliIo, json: unknown, text: string, asJson: boolean) {
  io.stdout.write(
    asJson ? `${JSON.stringify(json, null, 2)}\n` : termSafeLines(text.endsWith("\n") ? text : `${text}\n`),
  );
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/**
 * Runs `fn` with the admin operations: through the running server when there is one, otherwise
 * directly on the database (taking the embedded database's lock for the duration).
 */
async function withAdmin<T>(
  io: CliIo,
  fn: (ops: AdminOps, via: "server" | "database") => Promise<T>,
): Promise<T> {
  const config = loadConfig(io.env);
  if (config.serverUrl) {
    // A server named by BUTLER_URL gets BUTLER_ADMIN_TOKEN only, never the local data directory's token.
    if (!config.adminToken) {
      throw new AppError(
        "UNAUTHENTICATED",
        `BUTLER_URL is set (${config.serverUrl}): set BUTLER_ADMIN_TOKEN too`,
      );
    }
    return fn(httpAdmin(config.serverUrl, config.adminToken), "server");
  }
  const info = await readServerInfo(config.dataDir);
  if (info) {
    const token = config.adminToken ?? (await readAdminToken(config.dataDir));
    if (!token) {
      throw new AppError(
        "UNAUTHENTICATED",
        `a server runs at ${info.url} but its admin token was not found in ${config.dataDir}`,
      );
    }
    // server.json names a live pid; make sure the process answering at its URL is that server
    // (a reused pid must not receive the admin token) before sending the token there.
    let instance: unknown;
    try {
      instance = ((await (await fetch(`${info.url}/healthz`)).json()) as { instance?: unknown }).instance;
    } catch {
      instance = undefined;
    }
    if (instance !== info.instance) {
      throw new AppError(
        "UNAVAILABLE",
        `${config.dataDir}/server.json names a server at ${info.url} (pid ${info.pid}) that does not answer as itself; if it is gone, remove server.json`,
      );
    }
    return fn(httpAdmin(info.url, token), "server");
  }
  return withDatabase(config, (ops) => fn(ops, "database"));
}

async function withDatabase<T>(config: Config, fn: (ops: AdminOps) => Promise<T>): Promise<T> {
  const secrets = createSecrets(configuredSecrets(config));
  const log = createLogger(config.logLevel === "info" ? "warn" : config.logLevel, undefined, secrets);
  await ensureDataDir(config.dataDir);
  const release =
    config.database.kind === "pglite"
      ? await acquireDataDirLock(config.dataDir, "butler CLI")
      : async () => {};
  try {
    const database = await openDatabase(config.database, log);
    try {
      await migrate(database);
      const services = createServices({
        config,
        database,
        log,
        clock: systemClock,
        actor: `cli:${safeUser()}`,
        publicUrl: () => config.publicUrl ?? listenUrl(config.host, config.port),
        secrets,
      });
      await services.policies.refreshAll();
      try {
        return await fn(services.admin);
      } finally {
        await services.audit.close();
      }
    } finally {
      await database.close();
      // The embedded database's new files are created 0666: owner-only, like the rest.
      await tightenDataDir(config.dataDir);
    }
  } finally {
    await release();
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

async function serve(argv: string[], io: CliIo): Promise<number> {
  args(argv, {}, [0, 0]);
  const config = loadConfig(io.env);
  // One set of secrets for the log and the services: credentials read later are redacted in both.
  const secrets = createSecrets(configuredSecrets(config));
  const log = createLogger(config.logLevel, undefined, secrets);
  const server = await startServer(config, log, systemClock, { secrets });
  io.stderr.write(
    `Butler is serving at ${server.url} (database: ${config.database.kind}, policies: ${config.policiesDir})\n`,
  );
  // The embedded default is for trying Butler out: sign the first approver in to the dashboard at once.
  if (config.database.kind === "pglite") {
    const first = [...server.services.policies.index().projects.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .flatMap((p) => p.document.approvers.map((a) => a.id))[0];
    if (first) {
      const l = await server.services.admin.createDashboardLink(first);
      io.stderr.write(`Dashboard: open ${l.url} to sign in as ${first} (one time, until ${l.expires_at})\n`);
    } else io.stderr.write(`Dashboard: ${server.url}/dashboard (no policy names an approver yet)\n`);
  }
  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      log.info({ signal }, "shutting down");
      server.close().then(resolveStop, (e) => {
        log.error({ err: e }, "shutdown failed");
        resolveStop();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    process.on("SIGHUP", () => {
      server.services.policies
        .importDirectory("sighup")
        .catch((e) => log.error({ err: e }, "policy reload failed"));
    });
  });
  return 0;
}

async function dbMigrate(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, {}, [0, 0]);
  const via = await withAdmin(io, async (ops, v) => {
    await ops.migrate();
    return v;
  });
  print(
    io,
    { migrated: true, via },
    `Database is up to date (${via === "server" ? "through the running server" : "applied directly"}).`,
    !!values.json,
  );
  return 0;
}

async function policyValidate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [0, 1]);
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

async function providersValidate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [0, 1]);
  const dir = positionals[0] ?? loadConfig(io.env).providers.dir;
  const set = await loadProviders(dir);
  const issues = set.failures.flatMap((f) => f.issues);
  const ok = issues.length === 0;
  const names = [...set.providers.keys()];
  const text = ok
    ? `${names.length} provider${names.length === 1 ? "" : "s"} valid: ${names.join(", ") || "none"}`
    : `${issues.map(formatIssue).join("\n")}\n${issues.length} problem${issues.length === 1 ? "" : "s"} in ${set.failures.length} file${set.failures.length === 1 ? "" : "s"}`;
  print(io, { ok, providers: names, issues }, text, !!values.json);
  return ok ? 0 : 1;
}

async function policyCheck(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(
    argv,
    {
      agent: { type: "string" },
      project: { type: "string" },
      action: { type: "string" },
      resource: { type: "string" },
      branch: { type: "string" },
      params: { type: "string" },
      at: { type: "string" },
    },
    [0, 1],
  );
  const set = parsePolicySet(await readPolicyFiles(positionals[0] ?? loadConfig(io.env).policiesDir));
  for (const f of set.failures)
    io.stderr.write(
      `butler: skipping ${termSafe(f.file)}: ${f.issues.length} problem(s); run butler policy validate\n`,
    );
  let params: Record<string, unknown> | undefined;
  if (typeof values.params === "string") {
    try {
      params = JSON.parse(values.params);
    } catch (e) {
      throw new UsageError(`--params is not valid JSON: ${(e as Error).message}`);
    }
    if (params === null || typeof params !== "object" || Array.isArray(params))
      throw new UsageError("--params must be a JSON object");
  }
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
      branch: typeof values.branch === "string" ? values.branch : undefined,
      params,
    },
    at,
  );
  print(io, d, `${d.decision}: ${termSafe(d.reason)}`, !!values.json);
  return d.decision === "ALLOW" ? 0 : 1;
}

async function policyShow(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const p = await withAdmin(io, (ops) => ops.showPolicy(positionals[0]!));
  const header = `# ${p.project}: revision ${p.revision}, from ${p.source}, stored ${p.createdAt}, sha256 ${p.contentHash}\n`;
  print(io, p, header + p.yaml, !!values.json);
  return 0;
}

async function policyHistory(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const revisions = await withAdmin(io, (ops) => ops.policyHistory(positionals[0]!));
  const text = revisions
    .map(
      (r) =>
        `${String(r.revision).padStart(4)}  ${r.createdAt}  ${r.contentHash.slice(0, 12)}  ${r.source}${r.cause ? `  (${r.cause})` : ""}${r.retired ? "  (retired)" : ""}`,
    )
    .join("\n");
  print(io, { project: positionals[0], revisions }, text, !!values.json);
  return 0;
}

async function policyDiff(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [2, 3]);
  const [project, fromText, toText] = positionals as [string, string, string | undefined];
  const num = (s: string) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`'${s}' is not a revision number`);
    return Number(s);
  };
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

async function policyReload(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, {}, [0, 0]);
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
  const tokens = await withAdmin(io, (ops) =>
    ops.listAgentTokens(typeof values.project === "string" ? values.project : undefined),
  );
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

function requestLine(r: AccessRequestView): string {
  const call = `${r.action} on ${r.resource || "(no resource)"}${r.branch ? ` branch ${r.branch}` : ""}`;
  return `${r.id}  ${r.status.padEnd(8)}  ${r.project}  ${r.agent}  ${call}  ${r.risk_tier} risk, ${r.approvals.length}/${r.approvals_required} approvals, ${r.requested_ttl}`;
}

async function requestsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, { status: { type: "string" }, project: { type: "string" } }, [0, 0]);
  const list = await withAdmin(io, (ops) =>
    ops.listRequests({
      status: typeof values.status === "string" ? values.status : undefined,
      project: typeof values.project === "string" ? values.project : undefined,
    }),
  );
  print(
    io,
    { access_requests: list },
    list.length ? list.map(requestLine).join("\n") : "no access requests",
    !!values.json,
  );
  return 0;
}

async function requestsShow(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const r = await withAdmin(io, (ops) => ops.showRequest(positionals[0]!));
  const text = [
    requestLine(r),
    // On one line and quoted: the agent's words must not pass for lines of this output.
    `reason (written by the agent): ${JSON.stringify(r.reason)}`,
    r.decision
      ? `decided ${r.decision.at} by ${r.decision.by} via ${r.decision.via}${r.decision.reason ? `: ${r.decision.reason}` : ""}`
      : `pending until ${r.expires_at}`,
    ...(r.grant
      ? [
          `grant ${r.grant.id} expires ${r.grant.expires_at}${r.grant.revoked_at ? `, revoked ${r.grant.revoked_at}` : ""}`,
        ]
      : []),
    "",
    r.proposal.diff,
  ].join("\n");
  print(io, r, text, !!values.json);
  return 0;
}

async function requestsReview(verdict: "approve" | "deny", argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(
    argv,
    { approver: { type: "string" }, ttl: { type: "string" }, reason: { type: "string" } },
    [1, 1],
  );
  const approver = required(values, "approver");
  const r = await withAdmin(io, (ops) =>
    ops.reviewRequest(positionals[0]!, approver, verdict, {
      ttl: typeof values.ttl === "string" ? values.ttl : undefined,
      reason: typeof values.reason === "string" ? values.reason : undefined,
    }),
  );
  print(io, r, `${r.outcome}: ${requestLine(r.request)}`, !!values.json);
  return 0;
}

async function grantsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, { project: { type: "string" }, all: { type: "boolean" } }, [0, 0]);
  const list = await withAdmin(io, (ops) =>
    ops.listGrants({
      project: typeof values.project === "string" ? values.project : undefined,
      all: !!values.all,
    }),
  );
  const text = list.length
    ? list
        .map(
          (g) =>
            `${g.id}  ${g.state.padEnd(7)}  ${g.project}  ${g.agent}  ${g.action} on ${g.resource || "(no resource)"}  expires ${g.expires_at}${g.state === "active" ? ` (${g.seconds_left}s left)` : ""}  approved by ${g.approved_by.join(", ")}`,
        )
        .join("\n")
    : "no grants";
  print(io, { grants: list }, text, !!values.json);
  return 0;
}

async function grantsRevoke(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, { reason: { type: "string" } }, [1, 1]);
  const r = await withAdmin(io, (ops) =>
    ops.revokeGrant(positionals[0]!, typeof values.reason === "string" ? values.reason : undefined),
  );
  print(
    io,
    r,
    `Revoked ${r.grant_id}; ${positionals[0]} no longer allows anything (policy revision ${r.revision})`,
    !!values.json,
  );
  return 0;
}

async function credentialsSet(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  // The value comes from standard input only: argv is visible to every user of the machine.
  let value = "";
  for await (const chunk of io.stdin ?? process.stdin) {
    value += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    if (value.length > 16_384 * 4) throw new UsageError("the value on standard input is too long");
  }
  value = value.replace(/\r?\n$/, "");
  if (!value)
    throw new UsageError(
      'send the credential on standard input, e.g. printf %s "$KEY" | butler credentials set STRIPE_API_KEY',
    );
  const r = await withAdmin(io, (ops) => ops.setCredential(positionals[0]!, value));
  print(
    io,
    r,
    `${r.created ? "Stored" : "Replaced"} ${r.name} (encrypted; it is never shown again)`,
    !!values.json,
  );
  return 0;
}

async function credentialsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, {}, [0, 0]);
  const list = await withAdmin(io, (ops) => ops.listCredentials());
  const text =
    list.length === 0
      ? "no stored credentials"
      : list
          .map((c) => `${c.name}  key ${c.key_id}  updated ${c.updated_at} by ${termSafe(c.updated_by)}`)
          .join("\n");
  print(io, { credentials: list }, text, !!values.json);
  return 0;
}

async function credentialsDelete(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const r = await withAdmin(io, (ops) => ops.deleteCredential(positionals[0]!));
  print(io, r, `Deleted ${r.name}`, !!values.json);
  return 0;
}

const anchorOptions = {
  checkpoints: { type: "string", multiple: true },
  "public-key": { type: "string", multiple: true },
} as const;

function listOf(v: unknown): string[] {
  return Array.isArray(v) ? (v as string[]) : [];
}

/**
 * `audit verify`: the chain in the database (through the admin operations), then, when a public
 * key is known (--public-key, or the configured signing key), every checkpoint in the log and in
 * the --checkpoints files against the events the database holds.
 */
async function auditVerify(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, anchorOptions, [0, 0]);
  const files = listOf(values.checkpoints);
  let keys = await readPublicKeys(listOf(values["public-key"]));
  if (keys.length === 0) {
    const configured = loadConfig(io.env).auditCheckpoints?.key;
    if (configured) keys = [{ keyId: configured.keyId, publicKey: configured.publicKey }];
  }
  if (files.length > 0 && keys.length === 0)
    throw new UsageError(
      "--checkpoints needs the public key that signed them: --public-key FILE (or BUTLER_AUDIT_SIGNING_KEY_FILE)",
    );
  const external = await readCheckpointFiles(files);
  const r = await withAdmin(io, async (ops) => {
    const chain = await ops.verifyAudit();
    if (keys.length === 0) return { chain, anchors: undefined };
    const v = new AnchoredVerifier(keys, external.checkpoints, "the log");
    for await (const line of ops.exportAudit({})) v.push(line);
    return { chain, anchors: v.finish() };
  });
  const problems = [
    ...external.problems,
    // The chain's own break is the first line already.
    ...(r.anchors?.problems ?? []).filter((p) => !(p.kind === "chain" && !r.chain.ok)).map((p) => p.message),
  ];
  const ok = r.chain.ok && problems.length === 0;
  const text = [
    r.chain.ok
      ? `audit chain verified: ${r.chain.count} events, intact through sequence ${r.chain.verifiedThrough}`
      : `audit chain BROKEN at sequence ${r.chain.break!.seq}: ${r.chain.break!.problem} (intact through sequence ${r.chain.verifiedThrough})`,
    ...(r.anchors
      ? [
          ...(problems.length > 0
            ? [`audit chain does NOT match its checkpoints:`, ...problems.map((m) => `- ${m}`)]
            : []),
          ...anchorLines(r.anchors, "the log", keys),
        ]
      : []),
    ...external.notes.map((n) => `note: ${n}`),
  ].join("\n");
  if (!r.anchors && !values.json)
    io.stderr.write(
      "butler: note: checkpoints not checked (no --public-key, no BUTLER_AUDIT_SIGNING_KEY_FILE): a chain rewritten together with its head by a database superuser would pass; see docs/audit.md\n",
    );
  print(
    io,
    {
      ...r.chain,
      ok,
      ...(r.anchors ? { checkpoints: { ...r.anchors, problems: undefined }, problems } : {}),
      notes: external.notes,
    },
    text,
    !!values.json,
  );
  return ok ? 0 : 1;
}

/**
 * `audit verify-export`: an export checked offline, with no database: every line as Butler writes
 * it, the hash chain, every checkpoint line, and every checkpoint of the --checkpoints files.
 */
async function auditVerifyExport(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, anchorOptions, [1, 1]);
  const path = positionals[0]!;
  const files = listOf(values.checkpoints);
  const keys: VerifyingKey[] = await readPublicKeys(listOf(values["public-key"]));
  if (files.length > 0 && keys.length === 0)
    throw new UsageError("--checkpoints needs the public key that signed them: --public-key FILE");
  const external = await readCheckpointFiles(files);
  const anchored =
    keys.length > 0 ? new AnchoredVerifier(keys, external.checkpoints, "the export") : undefined;
  const plain = new ChainVerifier();
  let checkpointLines = 0;
  let lastSeq = 0;
  let count = 0;
  let unreadable: AnchorProblem | undefined;
  try {
    for await (const l of jsonlLines(path)) {
      const at = `line ${l.line}`;
      const fail = (message: string) => {
        unreadable = { kind: "chain", seq: lastSeq + 1, message: `${at}: ${message}` };
      };
      if (!l.complete) {
        fail(
          `the file ends in the middle of this line (no newline after it): the export was cut off after sequence ${lastSeq}`,
        );
        break;
      }
      if (l.text === undefined) {
        fail("not valid UTF-8");
        break;
      }
      const parsed = parseExportLine(l.text);
      if (!parsed.ok) {
        fail(l.text === "" ? "empty (an export has no empty lines)" : parsed.error);
        break;
      }
      const line = parsed.value;
      count++;
      lastSeq = line.seq;
      if (line.type === CHECKPOINT_TYPE) checkpointLines++;
      if (anchored) anchored.push(line);
      else plain.push(line);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code)
      throw new AppError("INVALID_INPUT", `${path}: cannot read it: ${(e as NodeJS.ErrnoException).code}`);
    throw e;
  }
  let report: AnchorReport | undefined;
  let problems: AnchorProblem[];
  if (anchored) {
    report = anchored.finish();
    // Past an unreadable line nothing was read: checkpoints beyond it are not "missing".
    problems = unreadable
      ? report.problems.filter((p) => p.kind !== "missing" || p.seq <= lastSeq)
      : report.problems;
  } else {
    problems = plain.broken ? [{ kind: "chain", seq: plain.broken.seq, message: plain.broken.problem }] : [];
  }
  if (unreadable) problems = [...problems, unreadable];
  const messages = [
    ...external.problems,
    ...problems.map((p) =>
      p.kind === "chain" && !p.message.startsWith("line ") ? `sequence ${p.seq}: ${p.message}` : p.message,
    ),
  ];
  const ok = messages.length === 0;
  const verifiedThrough = report ? report.verifiedThrough : plain.last.seq;
  const text = [
    ok
      ? `export verified: ${count} events, hash chain intact through sequence ${verifiedThrough}`
      : `export FAILED verification (hash chain intact through sequence ${verifiedThrough}):`,
    ...messages.map((m) => `- ${m}`),
    ...(report
      ? anchorLines(report, "the export", keys)
      : [
          `checkpoints not checked (no --public-key)${checkpointLines > 0 ? `: the export holds ${checkpointLines} checkpoint lines` : ""}; nothing anchors this export, so a rewrite with recomputed hashes, or events cut off its end, would pass`,
        ]),
    ...external.notes.map((n) => `note: ${n}`),
  ].join("\n");
  print(
    io,
    {
      ok,
      count,
      verifiedThrough,
      lastSeq,
      problems: messages,
      checkpoints: report ? { ...report, problems: undefined } : undefined,
      notes: external.notes,
    },
    text,
    !!values.json,
  );
  return ok ? 0 : 1;
}

/** `audit keygen`: a new Ed25519 key pair; the private key is written 0600 and never overwrites. */
async function auditKeygen(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, { out: { type: "string" } }, [0, 0]);
  const out = required(values, "out");
  const key = generateCheckpointKey();
  const create = async (file: string, mode: number) => {
    try {
      return await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new AppError(
        code === "EEXIST" ? "CONFLICT" : "INVALID_INPUT",
        code === "EEXIST"
          ? `${file} exists; refusing to overwrite a key (checkpoints signed with it could no longer be checked)`
          : `cannot create ${file}: ${code ?? (e as Error).message}`,
      );
    }
  };
  const pub = `${out}.pub`;
  // Both files are created (exclusively) before either is written: no half-made pair is left.
  const privateFile = await create(out, 0o600);
  let publicFile: Awaited<ReturnType<typeof open>>;
  try {
    publicFile = await create(pub, 0o644);
  } catch (e) {
    await privateFile.close();
    await rm(out, { force: true });
    throw e;
  }
  for (const [fh, text] of [
    [privateFile, key.privateKeyPem],
    [publicFile, key.publicKeyPem],
  ] as const) {
    try {
      await fh.writeFile(text, "utf8");
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  print(
    io,
    { private_key_file: out, public_key_file: pub, key_id: key.keyId, public_key: key.publicKeyPem },
    `Wrote the private key to ${out} (mode 0600) and the public key to ${pub} (key id ${key.keyId}).
Point BUTLER_AUDIT_SIGNING_KEY_FILE at ${out}; keep it out of the database and its backups.
Give the public key to whoever verifies (butler audit verify --public-key ${pub}):
${key.publicKeyPem}`,
    !!values.json,
  );
  return 0;
}

function auditFilter(values: Record<string, string | boolean | undefined>) {
  let since: Date | undefined;
  if (typeof values.since === "string") {
    const t = parseTimestamp(values.since);
    if (!t.ok) throw new UsageError(`--since ${t.error}`);
    since = new Date(t.value);
  }
  return {
    agent: typeof values.agent === "string" ? values.agent : undefined,
    project: typeof values.project === "string" ? values.project : undefined,
    since,
  };
}

async function auditExport(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(
    argv,
    { agent: { type: "string" }, project: { type: "string" }, since: { type: "string" } },
    [0, 0],
  );
  const filter = auditFilter(values);
  await withAdmin(io, async (ops) => {
    for await (const line of ops.exportAudit(filter)) await writeOut(io, `${canonicalJson(line)}\n`);
  });
  return 0;
}

async function auditReplay(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(
    argv,
    { agent: { type: "string" }, project: { type: "string" }, since: { type: "string" } },
    [0, 0],
  );
  const filter = { ...auditFilter(values), agent: required(values, "agent") };
  let n = 0;
  await withAdmin(io, async (ops) => {
    for await (const line of ops.exportAudit(filter)) {
      n++;
      await writeOut(
        io,
        values.json
          ? `${JSON.stringify({ seq: line.seq, ts: line.ts, story: story(line) })}\n`
          : `${formatStory(line)}\n`,
      );
    }
  });
  if (n === 0 && !values.json) io.stdout.write(`no events for agent ${termSafe(filter.agent)}\n`);
  return 0;
}

function formatStory(l: AuditLine): string {
  return `${l.ts}  #${l.seq}  ${termSafe(story(l))}`;
}
