import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import { type SigningKey, signingKeyFromPem } from "./audit/checkpoint.js";
import type { DatabaseConfig } from "./db/client.js";
import { AppError } from "./errors.js";
import type { LogFormat, LogLevel } from "./logger.js";
import { urlPasswords } from "./secrets.js";

/** Everything Butler reads from its environment, parsed once (see .env.example and the README). */
export interface Config {
  host: string;
  port: number;
  /**
   * How agents and people reach this server (used in hints such as the access-request URL).
   * When not configured, the address the server actually listens on is used.
   */
  publicUrl: string | undefined;
  dataDir: string;
  database: DatabaseConfig;
  policiesDir: string;
  policyWatch: boolean;
  logLevel: LogLevel;
  /** Readable lines on a terminal, JSON lines otherwise (`auto`), or always one of them. */
  logFormat: LogFormat;
  audit: { batchMax: number; queueMax: number; durability: AuditDurability };
  /**
   * Signed checkpoints of the audit chain head (docs/audit.md), when a signing key is configured:
   * written into the log and to the sinks outside the database.
   */
  auditCheckpoints: AuditCheckpointConfig | undefined;
  bodyLimitBytes: number;
  /** How long an MCP call that needs a person waits for the decision (with progress), in ms; 0: it does not wait. */
  mcpApprovalWaitMs: number;
  trustProxy: boolean;
  /** Admin API token given by the environment; otherwise one is kept in `dataDir/admin-token`. */
  adminToken: string | undefined;
  /** A running server for the CLI to talk to, instead of the one found in the data directory. */
  serverUrl: string | undefined;
  /** How long a CLI command waits for a server that is starting in the data directory (ms). */
  cliWaitMs: number;
  /** Slack approvals: HTTP mode (signing secret) or Socket Mode (app token). */
  slack:
    | { botToken: string; signingSecret: string | undefined; appToken: string | undefined; apiUrl: string }
    | undefined;
  /** Provider specs (providers/*.yaml) and where their calls go. */
  providers: {
    dir: string;
    /** MCP servers behind Butler (mcp_servers/*.yaml). */
    mcpDir: string;
    /** Base URLs replacing the specs' (local stand-ins, regional endpoints). */
    baseUrls: Readonly<Record<string, string>>;
    /**
     * Providers served on a port of their own, at the root (BUTLER_PROVIDER_PORTS), for SDKs that
     * take a host and port but no base path (stripe-node). Port 0 picks a free one.
     */
    ports: Readonly<Record<string, number>>;
  };
  /** The key that encrypts stored provider credentials (BUTLER_MASTER_KEY), when set. */
  masterKey: () => Buffer | undefined;
  /** A credential named by a provider spec, from the environment. */
  credentialFromEnv: (name: string) => string | undefined;
  /** A2A: hosts that push notifications may reach although they are internal or plain http. */
  a2a: { pushAllowlist: readonly string[] };
  /** Telegram approvals: webhook mode (with its secret) or long polling. */
  telegram:
    | { botToken: string; webhookSecret: string | undefined; apiRoot: string; mode: "webhook" | "polling" }
    | undefined;
}

/**
 * When a decision's answer may be sent (AUDIT_DURABILITY, docs/audit.md): `sync` (the default)
 * once its audit line is committed and flushed to disk; `async-deny` lets DENY lines, and `async`
 * every group-committed line, be answered once PostgreSQL has committed them but before the disk
 * flush (`synchronous_commit = off` for their batch): a crash of the database server can then lose
 * the newest lines, a suffix of the chain, never a line in the middle.
 */
export type AuditDurability = "sync" | "async-deny" | "async";

export const AUDIT_DURABILITIES: readonly AuditDurability[] = ["sync", "async-deny", "async"];

export interface AuditCheckpointConfig {
  /** The Ed25519 key read from BUTLER_AUDIT_SIGNING_KEY_FILE (which is never in the database). */
  key: SigningKey;
  keyFile: string;
  everyEvents: number;
  everySeconds: number;
  /** The append-only checkpoint file (JSONL). */
  file: string | undefined;
  /** The endpoint every checkpoint is POSTed to. */
  url: string | undefined;
}

const bool = (name: string) =>
  z
    .string()
    .transform((s) => s.trim().toLowerCase())
    .refine(
      (s) => ["1", "0", "true", "false", "yes", "no", "on", "off"].includes(s),
      `${name} must be true or false`,
    )
    .transform((s) => ["1", "true", "yes", "on"].includes(s));

const int = (name: string, min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .refine((n) => n >= min && n <= max, `${name} must be between ${min} and ${max}`);

const httpUrl = (name: string) =>
  z
    .string()
    .trim()
    .refine((s) => {
      try {
        const u = new URL(s);
        return u.protocol === "http:" || u.protocol === "https:";
      } catch {
        return false;
      }
    }, `${name} must be an http:// or https:// URL`)
    .transform((s) => s.replace(/\/+$/, ""));

const EnvSchema = z.object({
  HOST: z.string().trim().min(1, "HOST must not be empty").default("127.0.0.1"),
  PORT: int("PORT", 0, 65535).default(8080),
  BUTLER_PUBLIC_URL: httpUrl("BUTLER_PUBLIC_URL").optional(),
  BUTLER_DATA_DIR: z.string().trim().min(1, "BUTLER_DATA_DIR must not be empty").default("./.butler"),
  DATABASE_URL: z
    .string()
    .trim()
    .regex(/^postgres(ql)?:\/\//, "DATABASE_URL must be a postgres:// or postgresql:// URL")
    .optional(),
  DATABASE_POOL_SIZE: int("DATABASE_POOL_SIZE", 1, 1000).default(10),
  DATABASE_TIMEOUT_MS: int("DATABASE_TIMEOUT_MS", 100, 600_000).default(2_000),
  POLICIES_DIR: z.string().trim().min(1, "POLICIES_DIR must not be empty").default("./policies"),
  POLICY_WATCH: bool("POLICY_WATCH").default(true),
  BUTLER_MASTER_KEY: z
    .string()
    .trim()
    .refine(
      (s) =>
        /^[0-9a-fA-F]{64}$/.test(s) ||
        (/^[A-Za-z0-9+/]{43}=$/.test(s) && Buffer.from(s, "base64").length === 32),
      "BUTLER_MASTER_KEY must be 32 bytes as 64 hex characters or base64 (openssl rand -hex 32)",
    )
    .optional(),
  PROVIDERS_DIR: z.string().trim().min(1, "PROVIDERS_DIR must not be empty").default("./providers"),
  MCP_SERVERS_DIR: z.string().trim().min(1, "MCP_SERVERS_DIR must not be empty").default("./mcp_servers"),
  BUTLER_PROVIDER_URLS: z
    .string()
    .trim()
    .refine(
      (s) =>
        s.split(",").every((e) => {
          const m = /^\s*([a-z0-9][a-z0-9_-]*)=(\S+)\s*$/.exec(e);
          if (!m) return false;
          try {
            return ["http:", "https:"].includes(new URL(m[2]!).protocol);
          } catch {
            return false;
          }
        }),
      "BUTLER_PROVIDER_URLS must be a comma-separated list of provider=http(s)://base-url entries, e.g. stripe=http://127.0.0.1:12111",
    )
    .optional(),
  BUTLER_PROVIDER_PORTS: z
    .string()
    .trim()
    .refine(
      (s) =>
        s.split(",").every((e) => {
          const m = /^\s*([a-z0-9][a-z0-9_-]*)=(\d{1,5})\s*$/.exec(e);
          return m !== null && Number(m[2]) <= 65535;
        }),
      "BUTLER_PROVIDER_PORTS must be a comma-separated list of provider=port entries, e.g. stripe=12111",
    )
    .optional(),
  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
      error: "LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent",
    })
    .default("info"),
  LOG_FORMAT: z
    .enum(["auto", "pretty", "json"], {
      error: "LOG_FORMAT must be auto (readable on a terminal, JSON otherwise), pretty or json",
    })
    .default("auto"),
  AUDIT_BATCH_MAX: int("AUDIT_BATCH_MAX", 1, 10_000).default(1000),
  AUDIT_QUEUE_MAX: int("AUDIT_QUEUE_MAX", 1, 10_000_000).default(50_000),
  AUDIT_DURABILITY: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(
      z.enum(AUDIT_DURABILITIES, {
        error:
          "AUDIT_DURABILITY must be sync (the default: every answer waits for its audit line to reach the disk), async-deny (DENY answers do not wait for the disk flush) or async (no answer waits for it)",
      }),
    )
    .default("sync"),
  BUTLER_AUDIT_SIGNING_KEY_FILE: z.string().trim().optional(),
  BUTLER_AUDIT_CHECKPOINT_FILE: z.string().trim().optional(),
  // Posted to exactly as given (no trailing slash removed).
  BUTLER_AUDIT_CHECKPOINT_URL: z
    .string()
    .trim()
    .refine((s) => {
      try {
        const u = new URL(s);
        return (u.protocol === "http:" || u.protocol === "https:") && u.username === "" && u.password === "";
      } catch {
        return false;
      }
    }, "BUTLER_AUDIT_CHECKPOINT_URL must be an http:// or https:// URL without user:password@")
    .optional(),
  BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS: int("BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS", 1, 10_000_000).optional(),
  BUTLER_AUDIT_CHECKPOINT_EVERY_SECONDS: int("BUTLER_AUDIT_CHECKPOINT_EVERY_SECONDS", 1, 86_400).optional(),
  BODY_LIMIT_BYTES: int("BODY_LIMIT_BYTES", 1024, 64 * 1024 * 1024).default(65_536),
  MCP_APPROVAL_WAIT_SECONDS: int("MCP_APPROVAL_WAIT_SECONDS", 0, 900).default(50),
  TRUST_PROXY: bool("TRUST_PROXY").default(false),
  BUTLER_ADMIN_TOKEN: z
    .string()
    .trim()
    .min(32, "BUTLER_ADMIN_TOKEN must be at least 32 characters")
    .optional(),
  BUTLER_URL: httpUrl("BUTLER_URL")
    .refine(
      (s) => !/^[a-z]+:\/\/[^/]*@/i.test(s),
      "BUTLER_URL must not contain a user name or password: the CLI sends BUTLER_ADMIN_TOKEN",
    )
    .optional(),
  BUTLER_CLI_WAIT_MS: int("BUTLER_CLI_WAIT_MS", 0, 600_000).default(30_000),
  SLACK_BOT_TOKEN: z
    .string()
    .trim()
    .regex(/^xox[bp]-\S+$/, "SLACK_BOT_TOKEN must be a bot token (xoxb-…)")
    .optional(),
  SLACK_SIGNING_SECRET: z.string().trim().min(8, "SLACK_SIGNING_SECRET is too short").optional(),
  SLACK_APP_TOKEN: z
    .string()
    .trim()
    .regex(/^xapp-\S+$/, "SLACK_APP_TOKEN must be an app-level token (xapp-…)")
    .optional(),
  SLACK_API_URL: httpUrl("SLACK_API_URL").default("https://slack.com/api"),
  TELEGRAM_BOT_TOKEN: z
    .string()
    .trim()
    .regex(/^\d+:[A-Za-z0-9_-]+$/, "TELEGRAM_BOT_TOKEN must look like 123456:ABC…")
    .optional(),
  TELEGRAM_WEBHOOK_SECRET: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9_-]{1,256}$/, "TELEGRAM_WEBHOOK_SECRET must be 1 to 256 letters, digits, _ or -")
    .optional(),
  TELEGRAM_API_ROOT: httpUrl("TELEGRAM_API_ROOT").default("https://api.telegram.org"),
  BUTLER_A2A_PUSH_ALLOWLIST: z
    .string()
    .trim()
    .refine(
      (s) => s.split(",").every((h) => /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(h.trim())),
      "BUTLER_A2A_PUSH_ALLOWLIST must be a comma-separated list of host or host:port entries, e.g. 127.0.0.1:9000,hooks.internal",
    )
    .optional(),
  TELEGRAM_MODE: z
    .enum(["webhook", "polling"], { error: "TELEGRAM_MODE must be webhook or polling" })
    .optional(),
});

/** Settings that may instead be read from a file named by `<NAME>_FILE` (container secrets). */
const FILE_SETTINGS = [
  "DATABASE_URL",
  "BUTLER_MASTER_KEY",
  "BUTLER_ADMIN_TOKEN",
  "SLACK_BOT_TOKEN",
  "SLACK_SIGNING_SECRET",
  "SLACK_APP_TOKEN",
  "TELEGRAM_BOT_TOKEN",
  "TELEGRAM_WEBHOOK_SECRET",
] as const;

/**
 * The name of every environment variable the configuration reads (the README's settings table
 * documents each one: test/docs/readme.test.ts compares them).
 */
export const SETTING_NAMES: readonly string[] = [
  ...Object.keys(EnvSchema.shape),
  ...FILE_SETTINGS.map((name) => `${name}_FILE`),
];

/**
 * The value of an environment variable whose name the user gives at run time (not a setting of
 * Butler's: for example the agent token of `butler mcp stdio --token-env VAR`). Empty is unset.
 */
export function variableNamed(
  input: Readonly<Record<string, string | undefined>>,
  name: string,
): string | undefined {
  const v = input[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/**
 * Parses the environment. Every problem is reported at once, each naming its variable; empty
 * variables count as unset.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const input: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v.trim() !== "") input[k] = v;
  for (const name of FILE_SETTINGS) {
    const file = input[`${name}_FILE`];
    if (!file) continue;
    if (input[name]) problems.push(`set either ${name} or ${name}_FILE, not both`);
    try {
      input[name] = readFileSync(file, "utf8").trim();
    } catch (e) {
      problems.push(
        `${name}_FILE: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  const parsed = EnvSchema.safeParse(input);
  if (!parsed.success) for (const i of parsed.error.issues) problems.push(i.message);
  if (problems.length > 0 || !parsed.success) {
    throw new AppError("INVALID_INPUT", `Invalid configuration:\n- ${problems.join("\n- ")}`);
  }
  const e = parsed.data;
  if (e.SLACK_BOT_TOKEN && !e.SLACK_SIGNING_SECRET && !e.SLACK_APP_TOKEN) {
    problems.push("SLACK_BOT_TOKEN needs SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)");
  }
  if (!e.SLACK_BOT_TOKEN && (e.SLACK_SIGNING_SECRET || e.SLACK_APP_TOKEN))
    problems.push("SLACK_SIGNING_SECRET and SLACK_APP_TOKEN need SLACK_BOT_TOKEN");
  const telegramMode = e.TELEGRAM_MODE ?? (e.TELEGRAM_WEBHOOK_SECRET ? "webhook" : "polling");
  if (e.TELEGRAM_BOT_TOKEN && telegramMode === "webhook" && !e.TELEGRAM_WEBHOOK_SECRET) {
    problems.push("TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_SECRET");
  }
  if (!e.TELEGRAM_BOT_TOKEN && e.TELEGRAM_WEBHOOK_SECRET)
    problems.push("TELEGRAM_WEBHOOK_SECRET needs TELEGRAM_BOT_TOKEN");
  const auditCheckpoints = checkpointConfig(e, problems);
  if (e.AUDIT_DURABILITY !== "sync" && !e.DATABASE_URL)
    problems.push(
      `AUDIT_DURABILITY=${e.AUDIT_DURABILITY} needs PostgreSQL (DATABASE_URL): the embedded database has no background writer to flush an unflushed commit within a bounded time, so its loss window would have no bound; on the embedded database every answer waits for its audit line (sync)`,
    );
  if (problems.length > 0)
    throw new AppError("INVALID_INPUT", `Invalid configuration:\n- ${problems.join("\n- ")}`);
  const dataDir = resolve(e.BUTLER_DATA_DIR);
  return Object.freeze({
    host: e.HOST,
    port: e.PORT,
    publicUrl: e.BUTLER_PUBLIC_URL,
    dataDir,
    database: e.DATABASE_URL
      ? {
          kind: "postgres" as const,
          url: e.DATABASE_URL,
          poolSize: e.DATABASE_POOL_SIZE,
          timeoutMs: e.DATABASE_TIMEOUT_MS,
        }
      : { kind: "pglite" as const, dataDir: resolve(dataDir, "pglite") },
    policiesDir: resolve(e.POLICIES_DIR),
    policyWatch: e.POLICY_WATCH,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    audit: { batchMax: e.AUDIT_BATCH_MAX, queueMax: e.AUDIT_QUEUE_MAX, durability: e.AUDIT_DURABILITY },
    auditCheckpoints,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    mcpApprovalWaitMs: e.MCP_APPROVAL_WAIT_SECONDS * 1000,
    trustProxy: e.TRUST_PROXY,
    adminToken: e.BUTLER_ADMIN_TOKEN,
    serverUrl: e.BUTLER_URL,
    cliWaitMs: e.BUTLER_CLI_WAIT_MS,
    slack: e.SLACK_BOT_TOKEN
      ? {
          botToken: e.SLACK_BOT_TOKEN,
          signingSecret: e.SLACK_SIGNING_SECRET,
          appToken: e.SLACK_APP_TOKEN,
          apiUrl: `${e.SLACK_API_URL}/`,
        }
      : undefined,
    providers: {
      dir: resolve(e.PROVIDERS_DIR),
      mcpDir: resolve(e.MCP_SERVERS_DIR),
      baseUrls: Object.fromEntries(
        (e.BUTLER_PROVIDER_URLS ?? "")
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean)
          .map((x) => [x.slice(0, x.indexOf("=")), x.slice(x.indexOf("=") + 1).replace(/\/+$/, "")]),
      ),
      ports: Object.fromEntries(
        (e.BUTLER_PROVIDER_PORTS ?? "")
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean)
          .map((x) => [x.slice(0, x.indexOf("=")), Number(x.slice(x.indexOf("=") + 1))]),
      ),
    },
    masterKey: () =>
      e.BUTLER_MASTER_KEY === undefined
        ? undefined
        : Buffer.from(e.BUTLER_MASTER_KEY, /^[0-9a-fA-F]{64}$/.test(e.BUTLER_MASTER_KEY) ? "hex" : "base64"),
    credentialFromEnv: (name: string) => {
      const file = input[`${name}_FILE`];
      if (file) return readFileSync(file, "utf8").trim() || undefined;
      const v = input[name];
      return v === undefined || v.trim() === "" ? undefined : v.trim();
    },
    a2a: {
      pushAllowlist: (e.BUTLER_A2A_PUSH_ALLOWLIST ?? "")
        .split(",")
        .map((h) => h.trim())
        .filter((h) => h.length > 0),
    },
    telegram: e.TELEGRAM_BOT_TOKEN
      ? {
          botToken: e.TELEGRAM_BOT_TOKEN,
          webhookSecret: e.TELEGRAM_WEBHOOK_SECRET,
          apiRoot: e.TELEGRAM_API_ROOT,
          mode: telegramMode,
        }
      : undefined,
  });
}

/**
 * Reads the checkpoint signing key and settings; every problem names its variable (and for the
 * key file, the path and why it cannot be used).
 */
function checkpointConfig(
  e: z.infer<typeof EnvSchema>,
  problems: string[],
): AuditCheckpointConfig | undefined {
  const keyFile = e.BUTLER_AUDIT_SIGNING_KEY_FILE;
  if (!keyFile) {
    for (const name of [
      "BUTLER_AUDIT_CHECKPOINT_FILE",
      "BUTLER_AUDIT_CHECKPOINT_URL",
      "BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS",
      "BUTLER_AUDIT_CHECKPOINT_EVERY_SECONDS",
    ] as const) {
      if (e[name] !== undefined)
        problems.push(`${name} needs BUTLER_AUDIT_SIGNING_KEY_FILE (the key that signs checkpoints)`);
    }
    return undefined;
  }
  if (!e.BUTLER_AUDIT_CHECKPOINT_FILE && !e.BUTLER_AUDIT_CHECKPOINT_URL)
    problems.push(
      "BUTLER_AUDIT_SIGNING_KEY_FILE needs BUTLER_AUDIT_CHECKPOINT_FILE or BUTLER_AUDIT_CHECKPOINT_URL: checkpoints kept only in the database could be removed with the events they anchor",
    );
  const path = resolve(keyFile);
  let pem: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) {
      problems.push(`BUTLER_AUDIT_SIGNING_KEY_FILE: ${path} is not a file`);
      return undefined;
    }
    if ((st.mode & 0o007) !== 0) {
      problems.push(
        `BUTLER_AUDIT_SIGNING_KEY_FILE: ${path} is open to every user of the machine (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
      );
      return undefined;
    }
    pem = readFileSync(path, "utf8");
  } catch (x) {
    problems.push(
      `BUTLER_AUDIT_SIGNING_KEY_FILE: cannot read ${path}: ${(x as NodeJS.ErrnoException).code ?? (x as Error).message}`,
    );
    return undefined;
  }
  const key = signingKeyFromPem(pem);
  if (!key.ok) {
    problems.push(`BUTLER_AUDIT_SIGNING_KEY_FILE: ${path} cannot sign checkpoints: ${key.error}`);
    return undefined;
  }
  return {
    key: key.value,
    keyFile: path,
    everyEvents: e.BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS ?? 1000,
    everySeconds: e.BUTLER_AUDIT_CHECKPOINT_EVERY_SECONDS ?? 60,
    file: e.BUTLER_AUDIT_CHECKPOINT_FILE ? resolve(e.BUTLER_AUDIT_CHECKPOINT_FILE) : undefined,
    url: e.BUTLER_AUDIT_CHECKPOINT_URL,
  };
}

/** The http:// URL of a listening address (wildcard hosts are reached on loopback). */
export function listenUrl(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return `http://${h.includes(":") ? `[${h}]` : h}:${port}`;
}

/** Every secret the configuration holds, by the name of its setting. */
export function configuredSecrets(
  config: Partial<
    Pick<Config, "adminToken" | "slack" | "telegram" | "masterKey" | "database" | "providers" | "serverUrl">
  >,
): [name: string, value: string | undefined][] {
  const out: [string, string | undefined][] = [
    ["BUTLER_ADMIN_TOKEN", config.adminToken],
    ["SLACK_BOT_TOKEN", config.slack?.botToken],
    ["SLACK_SIGNING_SECRET", config.slack?.signingSecret],
    ["SLACK_APP_TOKEN", config.slack?.appToken],
    ["TELEGRAM_BOT_TOKEN", config.telegram?.botToken],
    // The part after the bot id is the secret one; it is redacted wherever it appears alone.
    ["TELEGRAM_BOT_TOKEN", config.telegram?.botToken.split(":")[1]],
    ["TELEGRAM_WEBHOOK_SECRET", config.telegram?.webhookSecret],
  ];
  const key = config.masterKey?.();
  if (key) {
    const hex = key.toString("hex");
    out.push(["BUTLER_MASTER_KEY", hex], ["BUTLER_MASTER_KEY", hex.toUpperCase()]);
    out.push(["BUTLER_MASTER_KEY", key.toString("base64")]);
  }
  if (config.database?.kind === "postgres")
    for (const p of urlPasswords(config.database.url)) out.push(["DATABASE_URL", p]);
  for (const p of urlPasswords(config.serverUrl)) out.push(["BUTLER_URL", p]);
  for (const url of Object.values(config.providers?.baseUrls ?? {}))
    for (const p of urlPasswords(url)) out.push(["BUTLER_PROVIDER_URLS", p]);
  return out;
}
