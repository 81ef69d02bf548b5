import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { TelegramChannel } from "../../src/channels/telegram/telegram-channel.js";
import { configuredSecrets, loadConfig } from "../../src/config.js";
import { AppError } from "../../src/errors.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { keyIdOf } from "../../src/providers/vault.js";
import { createSecrets } from "../../src/secrets.js";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { PushReceiver } from "../fakes/push-receiver.js";
import { a2aClient, ask, withPush } from "../helpers/a2a.js";
import { FakeClock } from "../helpers/clock.js";
import { createPostgresDatabase, ENGINE, seedPgliteDir } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { runCli } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));

/** A distinct, recognisable random value per secret, so that any copy of it is found. */
const rnd = (prefix: string, bytes = 18) => `${prefix}${randomBytes(bytes).toString("base64url")}`;

const S = {
  telegramBotToken: `${100000 + Math.floor(Math.random() * 800000)}:${rnd("TGBOT", 24)}`,
  telegramWebhookSecret: rnd("tgwh_"),
  slackBotToken: `xoxb-${rnd("slackbot")}`,
  slackSigningSecret: rnd("slacksign"),
  masterKeyHex: randomBytes(32).toString("hex"),
  adminToken: rnd("admin-token-", 30),
  stripeApiKey: rnd("sk_test_stripe"),
  stripeWebhookSecret: rnd("whsec_stripe"),
  revolutWebhookSecret: rnd("revolut_whsec"),
  /** Stored in the vault (sealed), read and decrypted for the call. */
  revolutAccessToken: rnd("revolut_oauth"),
  wiseApiToken: rnd("wise_token"),
  /** Credentials in a provider's base URL. */
  wiseUrlPassword: rnd("wiseurlpw"),
  pushToken: rnd("pushtoken"),
  pushCredentials: rnd("pushcreds"),
  /** The password in DATABASE_URL (PostgreSQL pass only; trust authentication ignores it). */
  dbPassword: rnd("dbpw"),
};

/** Every form in which a secret could be written out. */
function forms(): Record<string, string> {
  const out: Record<string, string> = { ...S };
  out.masterKeyBase64 = Buffer.from(S.masterKeyHex, "hex").toString("base64");
  out.masterKeyHexUpper = S.masterKeyHex.toUpperCase();
  // The telegram token without its bot id (the part that is secret).
  out.telegramTokenSecretPart = S.telegramBotToken.split(":")[1]!;
  if (ENGINE !== "postgres") delete out.dbPassword;
  return out;
}

const BILLING = seedText().replace(
  "  - id: jordan\n    name: Jordan\n",
  "  - id: jordan\n    name: Jordan\n    slack: { user_id: U0JORDAN }\n    telegram: { user_id: 7001 }\n",
);
const SUPPORT = `project: project-support
providers: [stripe, revolut, wise]
agents:
  - name: support-bot-1
    roles: [support-tier-1]
approvers:
  - id: jordan
    name: Jordan
    slack: { user_id: U0JORDAN }
    telegram: { user_id: 7001 }
`;

/** A closed loopback port: whatever is sent there is refused. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * The leak of issue 12 item 4, as an attacker who reads logs, the database or the audit export
 * would find it: with every platform and upstream failing, no configured secret may be written
 * anywhere. The server runs with every secret set to a distinct random value; the Telegram and
 * Slack APIs go away after start, the provider upstreams fail (one answers 500 echoing the key it
 * was sent, others refuse connections), the push receiver answers 500; the outbox is driven to its
 * last attempt with a fake clock. Then the captured log, a dump of every table and the audit
 * export are searched for every secret.
 */
describe(`secrets never reach logs, the database, the audit log or answers (${ENGINE})`, () => {
  const telegram = new FakeTelegram(S.telegramBotToken);
  const slack = new FakeSlack(S.slackBotToken);
  const receiver = new PushReceiver();
  const clock = new FakeClock(Date.now());
  const logLines: string[] = [];
  /** Everything the server or the CLI answered (bodies and output), searched like the log. */
  const answers: string[] = [];
  let echo: Server;
  let dir: string;
  let env: Record<string, string>;
  let server: RunningServer;
  let dropDb: (() => Promise<void>) | undefined;
  let dbUrl: string | undefined;
  let dump = "";
  let exported = "";

  async function http(method: string, path: string, token: string, body?: unknown) {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, text };
  }

  async function cli(argv: string[], stdin?: string) {
    const r = await runCli(argv, env, stdin);
    answers.push(r.stdout, r.stderr);
    return r;
  }

  beforeAll(async () => {
    await telegram.start();
    await slack.start();
    await receiver.start();
    receiver.failNext = { count: 1_000_000, status: 500 };
    // A careless upstream: answers with the credential it was sent in its body, as a 500 (Butler
    // answers for it) or a 401 (passed on to the agent as the provider sent it).
    echo = createServer((req, res) => {
      req.resume();
      res.writeHead(req.url?.startsWith("/v1/customers") ? 401 : 500, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          error: {
            message: `invalid key: ${req.headers.authorization} (${String(req.headers.authorization).slice(7)})`,
          },
        }),
      );
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    const echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
    const down = await closedPort();

    dir = await mkdtemp(join(tmpdir(), "butler-secrets-"));
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "project-billing.yaml"), BILLING);
    await writeFile(join(dir, "policies", "project-support.yaml"), SUPPORT);
    if (ENGINE === "postgres") {
      const created = await createPostgresDatabase();
      dropDb = created.drop;
      const u = new URL(created.url);
      u.password = S.dbPassword;
      dbUrl = u.toString();
    }
    env = {
      BUTLER_DATA_DIR: join(dir, "data"),
      POLICIES_DIR: join(dir, "policies"),
      PORT: "0",
      LOG_LEVEL: "silent",
      POLICY_WATCH: "false",
      ...(dbUrl ? { DATABASE_URL: dbUrl } : {}),
      BUTLER_ADMIN_TOKEN: S.adminToken,
      BUTLER_MASTER_KEY: S.masterKeyHex,
      TELEGRAM_BOT_TOKEN: S.telegramBotToken,
      TELEGRAM_WEBHOOK_SECRET: S.telegramWebhookSecret,
      TELEGRAM_API_ROOT: telegram.url,
      SLACK_BOT_TOKEN: S.slackBotToken,
      SLACK_SIGNING_SECRET: S.slackSigningSecret,
      SLACK_API_URL: slack.url,
      PROVIDERS_DIR,
      BUTLER_PROVIDER_URLS: [
        `stripe=${echoUrl}`,
        `revolut=http://127.0.0.1:${down}`,
        `wise=http://wise-user:${S.wiseUrlPassword}@127.0.0.1:${down}`,
      ].join(","),
      STRIPE_API_KEY: S.stripeApiKey,
      STRIPE_WEBHOOK_SECRET: S.stripeWebhookSecret,
      REVOLUT_WEBHOOK_SECRET: S.revolutWebhookSecret,
      WISE_API_TOKEN: S.wiseApiToken,
      BUTLER_A2A_PUSH_ALLOWLIST: `127.0.0.1:${receiver.port}`,
    };
    const config = loadConfig(env);
    if (config.database.kind === "pglite") await seedPgliteDir(config.database.dataDir);
    const secrets = createSecrets(configuredSecrets(config));
    const log = createLogger("trace", { write: (s: string) => void logLines.push(s) }, secrets);
    server = await startServer(config, log, clock, { secrets });
  });

  afterAll(async () => {
    await server?.close();
    await telegram.stop();
    await slack.stop();
    await receiver.stop();
    await new Promise<void>((r) => echo?.close(() => r()) ?? r());
    await dropDb?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("with every platform and upstream failing, to the last retry, no secret is written anywhere", async () => {
    // The chat platforms go away once the server has started.
    await telegram.stop();
    await slack.stop();

    const stored = await cli(["credentials", "set", "REVOLUT_ACCESS_TOKEN"], `${S.revolutAccessToken}\n`);
    expect(stored.code).toBe(0);
    const created = await cli([
      "agents",
      "create",
      "support-bot-1",
      "--project",
      "project-support",
      "--json",
    ]);
    expect(created.code).toBe(0);
    const agent = JSON.parse(created.stdout).token as string;

    // Cards for Slack and Telegram, and a push to the agent's receiver, all of which fail.
    const a2a = await a2aClient(server.url, agent);
    await a2a.sendMessage({
      ...ask({
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds",
        ttl: "PT1H",
        reason: "r",
      }),
      configuration: withPush(receiver.url, {
        token: S.pushToken,
        authentication: { scheme: "Bearer", credentials: S.pushCredentials },
        returnImmediately: true,
      }),
    });
    // Provider calls: an upstream that echoes the key in a 500, and two that cannot be reached
    // (one with credentials in its base URL, one with its key from the vault).
    const stripe = await http("POST", "/v1/providers/stripe/operations/list_charges", agent, { params: {} });
    expect(stripe.status).toBe(502);
    const echoed = await http("POST", "/v1/providers/stripe/operations/list_customers", agent, {
      params: {},
    });
    expect(echoed.status).toBe(401);
    expect(echoed.text).toContain("invalid key: Bearer [redacted");
    const revolut = await http("POST", "/v1/providers/revolut/operations/list_transactions", agent, {});
    expect(revolut.status).toBe(502);
    const wise = await http("POST", "/v1/providers/wise/operations/list_transfers", agent, {
      params: { profile_id: "p1" },
    });
    expect(wise.status).toBe(502);
    // Admin operations that call Telegram while it is unreachable, through the API and the CLI.
    await http("POST", "/admin/telegram/webhook", S.adminToken);
    await http("POST", "/admin/approvers/telegram-link", S.adminToken, { approver: "jordan" });
    await cli(["telegram", "set-webhook"]);
    await cli(["credentials", "list"]);

    // The outbox, driven to its last attempt: each pass runs once the backoff has passed.
    const db = server.services.database.db;
    const { sql } = await import("drizzle-orm");
    const pending = async () =>
      Number(
        (
          (await db.execute(
            sql`SELECT count(*)::int AS n FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL`,
          )) as unknown as { rows: { n: number }[] }
        ).rows[0]!.n,
      );
    for (let pass = 0; pass < 40 && (await pending()) > 0; pass++) {
      clock.advance(3_600_000);
      await server.services.outbox.drain();
    }
    expect(await pending()).toBe(0);
    await server.close();

    // Every table of the database, as text.
    if (ENGINE === "postgres") {
      const c = new pg.Client({ connectionString: dbUrl });
      await c.connect();
      const tables = await c.query(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
      );
      for (const t of tables.rows)
        dump += JSON.stringify((await c.query(`SELECT * FROM "${t.table_schema}"."${t.table_name}"`)).rows);
      await c.end();
    } else {
      const c = await PGlite.create(join(dir, "data", "pglite"));
      const tables = await c.query<{ table_schema: string; table_name: string }>(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
      );
      for (const t of tables.rows)
        dump += JSON.stringify((await c.query(`SELECT * FROM "${t.table_schema}"."${t.table_name}"`)).rows);
      await c.close();
    }
    // The export is searched as the audit log, not as an answer.
    const exportRun = await runCli(["audit", "export"], env);
    expect(exportRun.code).toBe(0);
    exported = exportRun.stdout;

    // The failures really happened and were recorded (this test is not vacuous).
    const lines = exported
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const failed = lines.filter((l) => l.type === "outbox.delivery_failed");
    expect(failed.map((l) => l.topic).sort()).toEqual(
      expect.arrayContaining(["a2a.push", "card.post", "card.post"]),
    );
    expect(failed.find((l) => /sendMessage/.test(l.reason))).toBeDefined();
    expect(lines.filter((l) => l.type === "provider.failed")).toHaveLength(3);
    expect(lines.filter((l) => l.type === "provider.called")).toHaveLength(1);
    expect(logLines.join("")).toContain("outbox delivery failed; will retry");
    const corpus = { log: logLines.join(""), database: dump, audit: exported, answers: answers.join("\n") };
    const found: string[] = [];
    for (const [name, value] of Object.entries(forms()))
      for (const [where, text] of Object.entries(corpus))
        if (text.includes(value)) found.push(`${name} in ${where}`);
    expect(found).toEqual([]);
    // Push-config credentials are stored sealed.
    expect(dump).toMatch(/"token":"v1:[0-9a-f]{8}:/);
  });
});

/** The one redactor every log line, stored error and audit text goes through. */
describe("the redactor and the logger", () => {
  const config = loadConfig({
    BUTLER_DATA_DIR: "/tmp/butler-unused",
    BUTLER_ADMIN_TOKEN: S.adminToken,
    BUTLER_MASTER_KEY: S.masterKeyHex,
    TELEGRAM_BOT_TOKEN: S.telegramBotToken,
    TELEGRAM_WEBHOOK_SECRET: S.telegramWebhookSecret,
    SLACK_BOT_TOKEN: S.slackBotToken,
    SLACK_SIGNING_SECRET: S.slackSigningSecret,
    SLACK_APP_TOKEN: "xapp-1-A0FAKE-an-app-level-token",
    DATABASE_URL: `postgres://butler:${encodeURIComponent(`${S.dbPassword}/+:@`)}@db.internal:5432/butler`,
    BUTLER_PROVIDER_URLS: `wise=https://wise-user:${S.wiseUrlPassword}@wise.internal`,
  });

  test("every configured secret is replaced, as is, inside JSON, URL-encoded and in Basic auth", () => {
    const secrets = createSecrets(configuredSecrets(config));
    const values = [
      S.adminToken,
      S.masterKeyHex,
      Buffer.from(S.masterKeyHex, "hex").toString("base64"),
      S.telegramBotToken,
      S.telegramWebhookSecret,
      S.slackBotToken,
      S.slackSigningSecret,
      "xapp-1-A0FAKE-an-app-level-token",
      `${S.dbPassword}/+:@`,
      S.wiseUrlPassword,
    ];
    for (const v of values) {
      for (const written of [
        `failed with ${v} in it`,
        JSON.stringify({ error: `quoted "${v}"` }),
        `https://example.test/?x=${encodeURIComponent(v)}`,
        `authorization: Basic ${Buffer.from(v).toString("base64")}`,
      ]) {
        const out = secrets.redact(written);
        expect(out).not.toContain(v);
        expect(out).toContain("[redacted");
      }
    }
    expect(secrets.redact(`token ${S.slackBotToken}.`)).toBe("token [redacted:SLACK_BOT_TOKEN].");
    // The Telegram token's secret half alone.
    const half = S.telegramBotToken.split(":")[1]!;
    expect(secrets.redact(`x${half}x`)).not.toContain(half);
  });

  test("credentials in any URL are removed, known or not", () => {
    const r = createSecrets().redact;
    expect(r("request to https://bot:hunter2@api.example/x failed")).toBe(
      "request to https://[redacted]@api.example/x failed",
    );
    expect(r("postgres://app:pw@10.0.0.5/db refused")).toBe("postgres://[redacted]@10.0.0.5/db refused");
    expect(r("https://ghp_abcdefgh12345@github.com/org/repo.git")).toBe(
      "https://[redacted]@github.com/org/repo.git",
    );
    expect(r("GET http://127.0.0.1:9/bot987654:AAE-unknown_token-123/getMe")).toBe(
      "GET http://127.0.0.1:9/bot[redacted]/getMe",
    );
    expect(r("/cb?code=abc123&state=x&access_token=zzz#f")).toBe(
      "/cb?code=[redacted]&state=x&access_token=[redacted]#f",
    );
    // Ordinary text is left alone.
    const plain = "denied: stripe:charges:read on stripe.com/v1/charges for jordan@example.com (a=b)";
    expect(r(plain)).toBe(plain);
  });

  test("a secret too short to redact safely is refused with a warning", () => {
    const secrets = createSecrets([
      ["TELEGRAM_WEBHOOK_SECRET", "abc"],
      ["STRIPE_API_KEY", "sk_test_long_enough"],
    ]);
    expect(secrets.warnings).toEqual([expect.stringContaining("TELEGRAM_WEBHOOK_SECRET is shorter than 8")]);
    expect(secrets.redact("abc sk_test_long_enough")).toBe("abc [redacted:STRIPE_API_KEY]");
  });

  test("log lines: messages, error messages and stacks, nested fields, causes and bindings are redacted; lines stay JSON", () => {
    const lines: string[] = [];
    const secrets = createSecrets(configuredSecrets(config));
    const log = createLogger("info", { write: (s: string) => void lines.push(s) }, secrets);
    const err = new Error(`request to http://127.0.0.1:1/bot${S.telegramBotToken}/sendMessage failed`, {
      cause: new Error(`with ${S.slackBotToken}`),
    });
    (err as Error & { config?: unknown }).config = {
      headers: { Authorization: `Bearer ${S.slackBotToken}` },
    };
    log
      .child({ component: `bound ${S.adminToken}` })
      .error({ err, nested: { deep: [S.masterKeyHex] } }, "failed");
    log.warn(`message with "${S.slackSigningSecret}"`);
    // Added later (a credential read from the vault) and redacted from then on.
    secrets.add("REVOLUT_ACCESS_TOKEN", S.revolutAccessToken);
    log.info({ upstream: `answered: ${S.revolutAccessToken}` }, "provider call");
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      const parsed = JSON.parse(line);
      expect(parsed).toBeTypeOf("object");
      for (const v of Object.values(S)) expect(line).not.toContain(v);
    }
    expect(lines[0]).toContain("bot[redacted:TELEGRAM_BOT_TOKEN]/sendMessage");
  });

  test("the CLI refuses a BUTLER_URL with credentials and never prints them", async () => {
    const r = await runCli(["agents", "list"], {
      BUTLER_URL: `http://butler:${S.wiseUrlPassword}@127.0.0.1:1`,
      BUTLER_ADMIN_TOKEN: S.adminToken,
      LOG_LEVEL: "silent",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("BUTLER_URL must not contain a user name or password");
    expect(r.stdout + r.stderr).not.toContain(S.wiseUrlPassword);
  });
});

/**
 * Push-config tokens and credentials at rest: whoever reads the database (a dump, a backup, a
 * SELECT by a support engineer) must not get credentials to the agents' receivers.
 */
describe(`push-config credentials are stored sealed (${ENGINE})`, () => {
  const pushes: { headers: Record<string, unknown>; body: any }[] = [];
  let arrived: ((n: number) => void) | undefined;
  let awaited = 0;
  /** Resolves once `n` pushes have arrived (an event, not a poll). */
  const pushCount = (n: number) =>
    new Promise<void>((resolve) => {
      awaited = n;
      arrived = () => pushes.length >= awaited && resolve();
      arrived(pushes.length);
    });
  let receiver: Server;
  let receiverUrl: string;
  let receiverPort: number;
  let env: Record<string, string>;
  let dir: string;
  let dropDb: (() => Promise<void>) | undefined;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let raw = "";
      req.on("data", (c) => {
        raw += c;
      });
      req.on("end", () => {
        pushes.push({ headers: req.headers, body: JSON.parse(raw) });
        res.writeHead(200).end();
        arrived?.(pushes.length);
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    receiverPort = (receiver.address() as AddressInfo).port;
    receiverUrl = `http://127.0.0.1:${receiverPort}/push`;
    dir = await mkdtemp(join(tmpdir(), "butler-push-seal-"));
    await mkdir(join(dir, "policies"));
    await writeFile(join(dir, "policies", "project-billing.yaml"), seedText());
    let url: string | undefined;
    if (ENGINE === "postgres") {
      const created = await createPostgresDatabase();
      dropDb = created.drop;
      url = created.url;
    }
    env = {
      BUTLER_DATA_DIR: join(dir, "data"),
      POLICIES_DIR: join(dir, "policies"),
      PORT: "0",
      LOG_LEVEL: "silent",
      POLICY_WATCH: "false",
      BUTLER_A2A_PUSH_ALLOWLIST: `127.0.0.1:${receiverPort}`,
      ...(url ? { DATABASE_URL: url } : {}),
    };
    const { database } = loadConfig(env);
    if (database.kind === "pglite") await seedPgliteDir(database.dataDir);
  });
  afterAll(async () => {
    await server?.close();
    await new Promise<void>((r) => receiver?.close(() => r()) ?? r());
    await dropDb?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function start(extra: Record<string, string> = {}, log = createLogger("silent")) {
    await server?.close();
    server = await startServer(loadConfig({ ...env, ...extra }), log);
    return server;
  }
  async function agentClient() {
    const r = await runCli(
      ["agents", "create", "billing-reconciler-1", "--project", "project-billing", "--json"],
      env,
    );
    return a2aClient(server!.url, JSON.parse(r.stdout).token);
  }
  const fileRequest = (token: string, credentials: string) => ({
    ...ask({ action: "stripe:charges:read", resource: "stripe.com/v1/charges", ttl: "PT1H", reason: "r" }),
    configuration: withPush(receiverUrl, {
      id: "main",
      token,
      authentication: credentials ? { scheme: "Bearer", credentials } : undefined,
      returnImmediately: true,
    }),
  });
  async function rows() {
    const { sql } = await import("drizzle-orm");
    return (
      (await server!.services.database.db.execute(
        sql`SELECT id, token, auth_credentials FROM a2a_push_configs ORDER BY created_at, id`,
      )) as unknown as { rows: { id: string; token: string; auth_credentials: string | null }[] }
    ).rows;
  }
  async function setRow(id: string, token: string, credentials: string | null) {
    const { sql } = await import("drizzle-orm");
    await server!.services.database.db.execute(
      sql`UPDATE a2a_push_configs SET token = ${token}, auth_credentials = ${credentials} WHERE id = ${id}`,
    );
  }

  test("without BUTLER_MASTER_KEY: sealed under the data directory's key on the embedded database, refused on PostgreSQL", async () => {
    await start();
    const client = await agentClient();
    const token = rnd("nokey-token");
    const before = (await rows()).length;
    if (ENGINE === "postgres") {
      const requests = async () =>
        JSON.parse((await runCli(["requests", "list", "--json"], env)).stdout).access_requests.length;
      const filed = await requests();
      await expect(client.sendMessage(fileRequest(token, ""))).rejects.toThrow(/BUTLER_MASTER_KEY/);
      // Refused before anything was stored (no config, no access request); one without credentials is fine.
      expect(await rows()).toHaveLength(before);
      expect(await requests()).toBe(filed);
      await client.sendMessage(fileRequest("", ""));
      expect((await rows()).at(-1)).toMatchObject({ token: "", auth_credentials: null });
    } else {
      const seen = pushCount(pushes.length + 1);
      await client.sendMessage(fileRequest(token, ""));
      await seen;
      const key = (await readFile(join(dir, "data", "push-key"), "utf8")).trim();
      expect((await stat(join(dir, "data", "push-key"))).mode & 0o777).toBe(0o600);
      expect((await rows()).at(-1)!.token).toMatch(new RegExp(`^v1:${keyIdOf(Buffer.from(key, "hex"))}:`));
      expect(JSON.stringify(await rows())).not.toContain(token);
      expect(pushes.at(-1)!.headers["x-a2a-notification-token"]).toBe(token);
    }
  });

  test("sealed at rest, sent in the clear, bound to their config: a sealed value moved to another config does not open", async () => {
    await start({ BUTLER_MASTER_KEY: S.masterKeyHex });
    const client = await agentClient();
    const token = rnd("sealed-token");
    const credentials = rnd("sealed-creds");
    const seen = pushCount(pushes.length + 1);
    const task = (await client.sendMessage(fileRequest(token, credentials))) as { id: string };
    await seen;
    expect(pushes.at(-1)!.headers).toMatchObject({
      authorization: `Bearer ${credentials}`,
      "x-a2a-notification-token": token,
    });
    const row = (await rows()).find((r) => r.id === `${task.id}:main`)!;
    const keyId = keyIdOf(Buffer.from(S.masterKeyHex, "hex"));
    expect(row.token).toMatch(new RegExp(`^v1:${keyId}:`));
    expect(row.auth_credentials).toMatch(new RegExp(`^v1:${keyId}:`));
    expect(JSON.stringify(await rows())).not.toContain(token);
    expect(JSON.stringify(await rows())).not.toContain(credentials);
    // The agent reads its own config back as it gave it.
    const mine = await client.getTaskPushNotificationConfig({ tenant: "", taskId: task.id, id: "main" });
    expect(mine).toMatchObject({ token, authentication: { scheme: "Bearer", credentials } });

    // A second config on the task, given the first one's sealed token by someone with database access.
    await client.createTaskPushNotificationConfig({
      tenant: "",
      id: "second",
      taskId: task.id,
      url: receiverUrl,
      token: rnd("second-token"),
      authentication: undefined,
    });
    await setRow(`${task.id}:second`, row.token, null);
    await expect(
      client.getTaskPushNotificationConfig({ tenant: "", taskId: task.id, id: "second" }),
    ).rejects.toThrow();
    expect(await server!.services.a2a.pushTarget(`${task.id}:second`).catch((e: Error) => e.message)).toMatch(
      /does not decrypt/,
    );
  });

  test("plaintext rows from before sealing keep working and are sealed at the next start", async () => {
    await start({ BUTLER_MASTER_KEY: S.masterKeyHex });
    const client = await agentClient();
    const seen = pushCount(pushes.length + 1);
    const task = (await client.sendMessage(fileRequest(rnd("t"), rnd("c")))) as { id: string };
    await seen;
    const legacyToken = rnd("legacy-token");
    const legacyCredentials = rnd("legacy-creds");
    await setRow(`${task.id}:main`, legacyToken, legacyCredentials);
    expect(
      await client.getTaskPushNotificationConfig({ tenant: "", taskId: task.id, id: "main" }),
    ).toMatchObject({
      token: legacyToken,
      authentication: { credentials: legacyCredentials },
    });

    await start({ BUTLER_MASTER_KEY: S.masterKeyHex });
    const row = (await rows()).find((r) => r.id === `${task.id}:main`)!;
    expect(row.token).toMatch(/^v1:/);
    expect(row.auth_credentials).toMatch(/^v1:/);
    expect(JSON.stringify(await rows())).not.toContain(legacyToken);
    // And they are what is sent: the next push about the task carries them.
    const next = pushCount(pushes.length + 1);
    const denied = await runCli(["requests", "list", "--json"], env);
    const requestId = JSON.parse(denied.stdout).access_requests.find(
      (r: { status: string }) => r.status === "pending",
    )?.id;
    expect(requestId).toBeDefined();
    const deny = await runCli(
      ["requests", "deny", requestId, "--approver", "jordan", "--reason", "not now", "--json"],
      env,
    );
    expect(deny.code).toBe(0);
    await next;
    const last = pushes.filter((p) => JSON.stringify(p.body).includes(task.id)).at(-1)!;
    expect(last.headers).toMatchObject({
      authorization: `Bearer ${legacyCredentials}`,
      "x-a2a-notification-token": legacyToken,
    });
  });

  test("a secret too short to be redacted is named in a warning at start-up", async () => {
    const lines: string[] = [];
    await start(
      { PROVIDERS_DIR, STRIPE_API_KEY: "sk_1234", BUTLER_MASTER_KEY: S.masterKeyHex },
      createLogger("warn", { write: (l: string) => void lines.push(l) }),
    );
    const warned = lines.map((l) => JSON.parse(l)).filter((l) => /shorter than 8/.test(l.msg));
    expect(warned.map((l) => l.msg)).toEqual([expect.stringMatching(/^STRIPE_API_KEY is shorter than 8/)]);
  });
});

/**
 * A chat user sees only what was written for people: an unexpected error while linking an account
 * (a database error carries its statement and parameters) is logged, and the user gets a sentence.
 */
describe("what a Telegram user is told when linking fails", () => {
  const telegram = new FakeTelegram();
  beforeAll(async () => {
    await telegram.start();
  });
  afterAll(async () => {
    await telegram.stop();
  });

  async function linkWith(redeemLink: () => Promise<string>): Promise<string> {
    const channel = new TelegramChannel(
      {
        botToken: telegram.token,
        apiRoot: telegram.url,
        mode: "webhook",
        webhookSecret: "tg-secret-for-link",
      },
      {
        rejected: async () => {},
        ignored: async () => {},
        redeemLink,
        alertAction: async () => ({ ok: false, code: "NOT_FOUND", message: "" }),
      },
      createLogger("silent"),
    );
    await channel.start(async () => ({ ok: false, code: "NOT_FOUND", message: "" }));
    await channel.bot.handleUpdate({
      update_id: 1,
      message: {
        message_id: 1,
        date: 0,
        chat: { id: 5, type: "private", first_name: "Sam" },
        from: { id: 5, is_bot: false, first_name: "Sam" },
        text: "/start somecode",
        entities: [{ type: "bot_command", offset: 0, length: 6 }],
      },
    });
    await channel.stop();
    return String(telegram.calledWith("sendMessage").at(-1)?.body.text);
  }

  test("a database error's text never reaches the user", async () => {
    const reply = await linkWith(async () => {
      throw new Error(
        'Failed query: select * from "link_codes" where "code_hash" = $1\nparams: 5f3c-secret-params',
      );
    });
    expect(reply).not.toContain("Failed query");
    expect(reply).not.toContain("secret-params");
    expect(reply).toContain("could not be linked");
  });

  test("a refusal written for people is passed on", async () => {
    const reply = await linkWith(async () => {
      throw new AppError("FORBIDDEN", "This link has expired; ask for a new one.");
    });
    expect(reply).toBe("This link has expired; ask for a new one.");
  });
});
