import { existsSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { FastifyInstance } from "fastify";
import { resealPushConfigs } from "./a2a/push-secrets.js";
import { httpCheckpointSink, openCheckpointFile } from "./audit/checkpoint-sinks.js";
import type { CheckpointSink } from "./audit/checkpointer.js";
import type { ChannelAdapter } from "./channels/channel-hooks.js";
import { type SupervisedChannel, superviseChannel } from "./channels/supervisor.js";
import { type Clock, systemClock } from "./clock.js";
import { type AuditDurability, type Config, configuredSecrets, listenUrl } from "./config.js";
import {
  acquireDataDirLock,
  ensureDataDir,
  readOrCreateAdminToken,
  readPushKey,
  removeServerInfo,
  tightenDataDir,
  writeServerInfo,
} from "./data-dir.js";
import { type Database, openDatabase } from "./db/client.js";
import { migrate } from "./db/migrate.js";
import { newId } from "./ids.js";
import { type Lifecycle, lifecycle, type Started } from "./lifecycle.js";
import type { Logger } from "./logger.js";
import { mcpCredentialNames } from "./providers/mcp-server-spec.js";
import { loadProviders, type ProviderSet } from "./providers/provider-gateway.js";
import { buildProviderListener } from "./providers/routes.js";
import { createSecrets, type Secrets } from "./secrets.js";
import { buildApp } from "./server/app.js";
import { createServices, type ServiceOptions, type Services } from "./services.js";
import { PACKAGE_VERSION } from "./version.js";
import { formatIssue } from "./yaml-file.js";

/** How long `startServer` waits for the channels' first attempt to connect before going on without them. */
const CHANNEL_FIRST_ATTEMPT_MS = 5_000;

export interface RunningServer {
  app: FastifyInstance;
  /** Providers served on their own port (BUTLER_PROVIDER_PORTS), by name. */
  providerUrls: Record<string, string>;
  /** The URL the server listens on (with the real port when PORT=0). */
  url: string;
  services: Services;
  adminToken: string;
  /** Stops accepting calls, finishes in-flight ones, flushes the audit log and closes the database. */
  close(): Promise<void>;
}

/**
 * The composition root of `butler serve`: the parts of the process, in the order they start (they
 * stop in reverse, on close or when a later part fails to start).
 */
export async function startServer(
  config: Config,
  log: Logger,
  clock: Clock = systemClock,
  /**
   * The edges: how agents are told of outcomes, and the approval surfaces; and the secrets `log`
   * redacts (createLogger's), which learn the credentials read at run time. Default: the
   * configuration's secrets (then `log` knows nothing of credentials read later).
   */
  edges: Pick<ServiceOptions, "notifier" | "channels" | "secrets"> = {},
): Promise<RunningServer> {
  const secrets = edges.secrets ?? createSecrets(configuredSecrets(config));
  const life = lifecycle(log);
  log.info(
    { version: PACKAGE_VERSION, data: config.dataDir, database: config.database.kind },
    "butler is starting",
  );
  try {
    await prepareDataDir(config, log);
    await life.start("data directory lock", async () => ({
      value: undefined,
      stop:
        config.database.kind === "pglite"
          ? await acquireDataDirLock(config.dataDir, "butler serve")
          : undefined,
    }));
    // The checkpoint sinks first: a checkpoint file that cannot be opened stops the start.
    const checkpointSinks = await life.start("checkpoint sinks", () => openCheckpointSinks(config, log));
    const database = await life.start("database", () => openStore(config, log));
    const providers = await loadProviderSpecs(config, secrets, log);
    let publicUrl = config.publicUrl ?? listenUrl(config.host, config.port);
    const services = createServices({
      providers,
      config,
      database,
      log,
      clock,
      actor: "admin-api",
      publicUrl: () => publicUrl,
      notifier: edges.notifier,
      channels: edges.channels,
      adapters: await chatAdapters(config, clock, log),
      checkpointSinks,
      secrets,
      pushKey: await pushKeyOf(config),
    });
    await resealPushes(database, services, log);
    await life.start("change bus", async () => {
      await services.changes.start();
      return { value: undefined, stop: () => services.changes.stop() };
    });
    await life.start("policies", () => startPolicies(config, services, log));
    await life.start("pacts", () => startPacts(services, log));
    // The audit log closes after the outbox, the sweeper and the checkpoints stop (they write to it).
    await life.start("audit log", async () => ({ value: undefined, stop: () => services.audit.close() }));
    await life.start("audit checkpoints", () => startCheckpoints(config, services, checkpointSinks, log));
    await life.start("outbox", async () => {
      services.outbox.start();
      return { value: undefined, stop: () => services.outbox.stop() };
    });
    await life.start("sweeper", () => startSweeper(services, log));
    // Connections to the MCP servers behind Butler (opened when first needed) close before the audit log.
    await life.start("MCP upstreams", () => closingMcpUpstreams(services));
    const adminToken = config.adminToken ?? (await readOrCreateAdminToken(config.dataDir));
    secrets.add("admin token", adminToken);
    // Every secret known at start is registered by now: say which ones are too short to redact.
    for (const w of secrets.warnings) log.warn(w);
    const instanceId = newId("srv");
    const supervised: SupervisedChannel[] = [];
    const health = databaseHealth(database);
    const app = await life.start("HTTP server", async () => {
      const app = await buildApp({
        log,
        bodyLimitBytes: config.bodyLimitBytes,
        trustProxy: config.trustProxy,
        tokens: services.tokens,
        approverTokens: services.approverTokens,
        butler: services.butler,
        gateway: services.gateway,
        metrics: services.metrics,
        admin: services.admin,
        channels: services.channels,
        a2a: services.a2a,
        providers: services.providers,
        mcp: {
          policies: services.policies,
          db: database.db,
          clock,
          streams: services.mcpStreams,
          upstreams: services.mcpUpstreams,
          approvalWaitMs: config.mcpApprovalWaitMs,
        },
        dashboard: {
          db: database.db,
          sessions: services.dashboardSessions,
          butler: services.butler,
          projects: () => services.policies.index().projects,
          admin: services.admin,
          clock,
          verifyAudit: () => services.admin.verifyAudit(),
          secureCookies: (config.publicUrl ?? "").startsWith("https:"),
        },
        adminToken,
        instanceId,
        auditDurability: services.audit.durability,
        checkReady: health.ready,
        components: () => ({
          database: health.state(),
          ...Object.fromEntries(supervised.map((c) => [c.kind, c.state()])),
        }),
      });
      return { value: app, stop: () => app.close() };
    });
    await app.listen({ host: config.host, port: config.port });
    supervised.push(...(await startChannels(life, services, log)));
    const addr = app.server.address();
    const url = listenUrl(config.host, typeof addr === "object" && addr ? addr.port : config.port);
    const providerUrls = await serveProviderPorts(life, config, providers, services, log);
    publicUrl = config.publicUrl ?? url;
    await life.start("server info", async () => {
      await writeServerInfo(config.dataDir, {
        pid: process.pid,
        url,
        instance: instanceId,
        startedAt: clock.now().toISOString(),
      });
      return { value: undefined, stop: () => removeServerInfo(config.dataDir) };
    });
    if (config.policyWatch && existsSync(config.policiesDir))
      await life.start("policy watch", async () => {
        services.policies.watch();
        return { value: undefined, stop: async () => services.policies.stopWatching() };
      });
    logServing(log, config, services.audit.durability, url, publicUrl, !!edges.channels?.length);
    return {
      app,
      url,
      providerUrls,
      services,
      adminToken,
      close() {
        health.closing();
        return life.stopAll();
      },
    };
  } catch (e) {
    await life.stopAll();
    throw e;
  }
}

/**
 * Says at start what an answer waits for: the default in one line, an asynchronous mode as a
 * warning naming what a crash of the database server can lose.
 */
/** The lines that say the server is serving: where, on what, how durably, and whether chat is set up. */
function logServing(
  log: Logger,
  config: Config,
  durability: AuditDurability,
  url: string,
  publicUrl: string,
  channelsGiven: boolean,
): void {
  log.info(
    { url, database: config.database.kind, audit_durability: durability, policies: config.policiesDir },
    "butler is serving",
  );
  logAuditDurability(durability, log);
  if (!channelsGiven && !config.slack && !config.telegram)
    log.info(
      { dashboard: `${publicUrl}/dashboard`, api: `POST ${publicUrl}/v1/access-requests/:id/approve` },
      "no chat channel is configured (SLACK_BOT_TOKEN, TELEGRAM_BOT_TOKEN): access requests are posted to no chat; approvers decide in the dashboard, with `butler requests approve`, or through the API",
    );
}

function logAuditDurability(durability: AuditDurability, log: Logger): void {
  if (durability === "sync") {
    log.info(
      { audit_durability: durability },
      "audit durability sync: every answer is sent only after its audit line is committed and flushed to disk",
    );
    return;
  }
  log.warn(
    { audit_durability: durability },
    `audit durability ${durability}: ${durability === "async" ? "answers" : "DENY answers"} are sent once PostgreSQL has committed their audit line, before it is flushed to disk; a crash of the database server (not of Butler) can lose the newest such lines, up to about 3 x wal_writer_delay (600 ms by default), always the newest suffix of the chain`,
  );
}

/** The data directory exists and is owner-only. */
async function prepareDataDir(config: Config, log: Logger): Promise<void> {
  await ensureDataDir(config.dataDir);
  // Files others could read or write: taken back, and said once (PGlite creates its files 0666).
  const loose = await tightenDataDir(config.dataDir);
  if (loose.length > 0)
    log.warn(
      { dir: config.dataDir, changed: loose.length, paths: loose.slice(0, 10) },
      "the data directory had files or directories other users could read or write; they are owner-only now",
    );
}

async function openCheckpointSinks(config: Config, log: Logger): Promise<Started<CheckpointSink[]>> {
  const sinks: CheckpointSink[] = [];
  const cp = config.auditCheckpoints;
  if (cp?.file) sinks.push(await openCheckpointFile(cp.file, log));
  if (cp?.url) sinks.push(httpCheckpointSink(cp.url, log));
  return { value: sinks, stop: async () => void (await Promise.all(sinks.map((s) => s.close()))) };
}

/** The database, open and migrated. */
async function openStore(config: Config, log: Logger): Promise<Started<Database>> {
  const database = await openDatabase(config.database, log);
  const stop = async () => {
    await database.close();
    await tightenDataDir(config.dataDir);
  };
  try {
    await migrate(database);
  } catch (e) {
    await stop();
    throw e;
  }
  log.info({ database: config.database.kind }, "database ready: migrations applied");
  // What the embedded database created, owner-only too (its directories are 0700, so files it
  // creates later are out of others' reach until the next tightening).
  await tightenDataDir(config.dataDir);
  return { value: database, stop };
}

/**
 * Push-config tokens and credentials are sealed under BUTLER_MASTER_KEY, or on the embedded
 * database under a key kept in the data directory (made the first time it is needed).
 */
async function pushKeyOf(config: Config): Promise<Buffer | undefined> {
  return config.database.kind === "pglite"
    ? await readPushKey(config.dataDir, config.masterKey() === undefined)
    : undefined;
}

/** Slack and Telegram, as configured; built by the services once what they report to exists. */
/**
 * The configured chat platforms' adapters. Their SDKs are loaded only when configured: Bolt alone
 * adds about a quarter of a second to every start.
 */
async function chatAdapters(config: Config, clock: Clock, log: Logger): Promise<ChannelAdapter[]> {
  const adapters: ChannelAdapter[] = [];
  const { slack, telegram } = config;
  if (slack) {
    const { SlackChannel } = await import("./channels/slack/slack-channel.js");
    adapters.push((hooks) => new SlackChannel(slack, hooks, clock, log));
  }
  if (telegram) {
    const { TelegramChannel } = await import("./channels/telegram/telegram-channel.js");
    adapters.push((hooks) => new TelegramChannel(telegram, hooks, log));
  }
  return adapters;
}

/** Pacts set through the admin API, in memory on every instance (reloaded when any instance sets one). */
async function startPacts(services: Services, log: Logger): Promise<Started<undefined>> {
  services.pacts.watch((e) => log.error({ err: e }, "pacts could not be reloaded"));
  await services.pacts.load();
  return { value: undefined, stop: async () => undefined };
}

/** The MCP servers behind Butler: nothing to start (each is connected when first needed), closed at stop. */
async function closingMcpUpstreams(services: Services): Promise<Started<undefined>> {
  return { value: undefined, stop: () => services.mcpUpstreams.close() };
}

async function loadProviderSpecs(config: Config, secrets: Secrets, log: Logger): Promise<ProviderSet> {
  const providers = await loadProviders(config.providers.dir, config.providers.mcpDir);
  for (const f of providers.failures)
    for (const i of f.issues) log.error({ file: f.file }, `provider spec not loaded: ${formatIssue(i)}`);
  log.info({ providers: [...providers.providers.keys()] }, "providers loaded");
  // Provider credentials and webhook secrets from the environment are secrets from the start
  // (those in the vault are added when they are decrypted).
  for (const spec of providers.providers.values())
    for (const name of [spec.auth?.credential, spec.webhooks?.secret, ...mcpCredentialNames(spec)])
      if (name) {
        try {
          secrets.add(name, config.credentialFromEnv(name));
        } catch {
          // An unreadable NAME_FILE: the call that needs it reports that.
        }
      }
  return providers;
}

async function resealPushes(database: Database, services: Services, log: Logger): Promise<void> {
  const sealed = await resealPushConfigs(database.db, services.pushSealer);
  if (sealed.resealed > 0) log.info({ configs: sealed.resealed }, "push notification credentials sealed");
  if (sealed.plaintext > 0)
    log.warn(
      { configs: sealed.plaintext },
      "push notification tokens or credentials are stored in plaintext: set BUTLER_MASTER_KEY to seal them",
    );
  if (sealed.unreadable > 0)
    log.warn(
      { configs: sealed.unreadable },
      "push notification credentials are sealed under a key this server does not have; their pushes fail",
    );
}

/** The policies in force: stored revisions, resynchronised every 30 s, then the directory imported. */
async function startPolicies(config: Config, services: Services, log: Logger): Promise<Started<undefined>> {
  await services.policies.refreshAll();
  const stopResync = services.policies.resyncEvery(30_000);
  try {
    await importPolicies(config, services, log);
  } catch (e) {
    stopResync();
    throw e;
  }
  return { value: undefined, stop: async () => stopResync() };
}

/** The policies directory, imported at start (the revisions already stored keep serving otherwise). */
async function importPolicies(config: Config, services: Services, log: Logger): Promise<void> {
  if (existsSync(config.policiesDir)) {
    const report = await services.policies.importDirectory("startup");
    log.info(
      {
        loaded: report.loaded.length,
        unchanged: report.unchanged.length,
        failed: report.failed.length,
        retired: report.retired.length,
      },
      "policies imported",
    );
  } else {
    log.warn(
      { dir: config.policiesDir },
      "the policies directory does not exist; serving stored revisions only",
    );
  }
}

async function startCheckpoints(
  config: Config,
  services: Services,
  sinks: readonly CheckpointSink[],
  log: Logger,
): Promise<Started<undefined>> {
  const checkpointer = services.checkpointer;
  const cp = config.auditCheckpoints;
  if (!checkpointer || !cp) return { value: undefined };
  const timer = setInterval(() => void checkpointer.tick(), Math.min(cp.everySeconds * 1000, 5_000));
  timer.unref();
  log.info(
    {
      key_id: cp.key.keyId,
      every_events: cp.everyEvents,
      every_seconds: cp.everySeconds,
      sinks: sinks.map((s) => s.name),
    },
    "audit checkpoints are signed",
  );
  return {
    value: undefined,
    // Runs after the outbox and the sweeper stop: the audit queue is drained first, so that the
    // last checkpoint covers every event of this instance.
    stop: async () => {
      clearInterval(timer);
      await services.audit.close();
      await checkpointer.close();
    },
  };
}

/** Expiries, reminders, A2A catch-up and expired dashboard sessions, every 5 s, one pass at a time. */
async function startSweeper(services: Services, log: Logger): Promise<Started<undefined>> {
  let sweeping: Promise<unknown> | undefined;
  const sweeper = setInterval(() => {
    sweeping ??= services.butler
      .sweep()
      .then(() => services.a2a.catchUp())
      .then(() => services.dashboardSessions.purge())
      .then(() => services.purgeMcpSessions())
      .then(() => services.purgeRateCounts())
      .then(() => services.purgeSpendKeys())
      .then(() => services.usage.sweep())
      .catch((e) => log.error({ err: e }, "sweep failed"))
      .finally(() => {
        sweeping = undefined;
      });
  }, 5_000);
  sweeper.unref();
  return {
    value: undefined,
    stop: async () => {
      clearInterval(sweeper);
      await sweeping;
      // Tool use counted since the last sweep is stored before the database closes.
      await services.usage
        .flush()
        .catch((e: unknown) => log.error({ err: e }, "tool usage could not be stored"));
    },
  };
}

/**
 * Liveness (/healthz) reports the database as last seen (up: it was just migrated) and never
 * waits for it; readiness (/readyz) asks it, within the database timeout.
 */
function databaseHealth(database: Database) {
  let closing = false;
  let state: "up" | "down" = "up";
  let checkedAt = 0;
  let check: Promise<void> | undefined;
  const ping = async () => {
    try {
      await database.db.execute(sql`SELECT 1`);
      state = "up";
    } catch (e) {
      state = "down";
      throw e;
    } finally {
      checkedAt = performance.now();
    }
  };
  return {
    ready: async () => {
      if (closing) throw new Error("shutting down");
      await ping();
    },
    state: () => {
      if (!check && performance.now() - checkedAt > 1000)
        check = ping()
          .catch(() => {})
          .finally(() => {
            check = undefined;
          });
      return state;
    },
    closing: () => {
      closing = true;
    },
  };
}

/**
 * The approval surfaces, started once the server listens. A platform that cannot be reached, or
 * refuses the token, never stops the server: the channel is reported degraded (GET /healthz) and
 * retried in the background. The first attempt is waited for a moment, so that a healthy channel
 * is up when the server says it serves.
 */
async function startChannels(life: Lifecycle, services: Services, log: Logger): Promise<SupervisedChannel[]> {
  const supervised: SupervisedChannel[] = [];
  for (const channel of services.channels)
    supervised.push(
      await life.start(`channel ${channel.kind}`, async () => {
        const c = superviseChannel(channel, (input) => services.butler.reviewFromChannel(input), log);
        return { value: c, stop: () => c.stop() };
      }),
    );
  await Promise.race([
    Promise.all(supervised.map((c) => c.firstAttempt)),
    new Promise((r) => setTimeout(r, CHANNEL_FIRST_ATTEMPT_MS).unref()),
  ]);
  return supervised;
}

/** Providers served at the root of their own port, for SDKs that take no base path. */
async function serveProviderPorts(
  life: Lifecycle,
  config: Config,
  providers: ProviderSet,
  services: Services,
  log: Logger,
): Promise<Record<string, string>> {
  const providerUrls: Record<string, string> = {};
  for (const [name, providerPort] of Object.entries(config.providers.ports)) {
    if (!providers.providers.has(name))
      throw new Error(
        `BUTLER_PROVIDER_PORTS names provider '${name}', which is not loaded (loaded: ${[...providers.providers.keys()].join(", ") || "none"})`,
      );
    const listener = await life.start(`provider port ${name}`, async () => {
      const l = buildProviderListener({
        provider: name,
        providers: services.providers,
        tokens: services.tokens,
        bodyLimitBytes: config.bodyLimitBytes,
        log,
      });
      return { value: l, stop: () => l.close() };
    });
    await listener.listen({ host: config.host, port: providerPort });
    const a = listener.server.address();
    providerUrls[name] = listenUrl(config.host, typeof a === "object" && a ? a.port : providerPort);
    log.info({ provider: name, url: providerUrls[name] }, "provider served on its own port");
  }
  return providerUrls;
}
