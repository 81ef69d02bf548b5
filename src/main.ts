import { existsSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { FastifyInstance } from "fastify";
import { resealPushConfigs } from "./a2a/push-secrets.js";
import { httpCheckpointSink, openCheckpointFile } from "./audit/checkpoint-sinks.js";
import type { CheckpointSink } from "./audit/checkpointer.js";
import type { ApprovalChannel, ChannelHooks } from "./channels/channel.js";
import { SlackChannel } from "./channels/slack/slack-channel.js";
import { type SupervisedChannel, superviseChannel } from "./channels/supervisor.js";
import { TelegramChannel } from "./channels/telegram/telegram-channel.js";
import { type Clock, systemClock } from "./clock.js";
import { type Config, configuredSecrets, listenUrl } from "./config.js";
import {
  acquireDataDirLock,
  ensureDataDir,
  readOrCreateAdminToken,
  readPushKey,
  removeServerInfo,
  tightenDataDir,
  writeServerInfo,
} from "./data-dir.js";
import { openDatabase } from "./db/client.js";
import { migrate } from "./db/migrate.js";
import { mendText } from "./http/validation.js";
import { newId } from "./ids.js";
import type { Logger } from "./logger.js";
import { loadProviders } from "./providers/provider-gateway.js";
import { buildProviderListener } from "./providers/routes.js";
import { createSecrets } from "./secrets.js";
import { buildApp } from "./server/app.js";
import { createServices, type ServiceOptions, type Services } from "./services.js";
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
 * The composition root of `butler serve`: data directory, database and migrations, services,
 * policies, HTTP server, and the process lifecycle around them.
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
  await ensureDataDir(config.dataDir);
  // Files others could read or write: taken back, and said once (PGlite creates its files 0666).
  const loose = await tightenDataDir(config.dataDir);
  if (loose.length > 0)
    log.warn(
      { dir: config.dataDir, changed: loose.length, paths: loose.slice(0, 10) },
      "the data directory had files or directories other users could read or write; they are owner-only now",
    );
  const releaseLock =
    config.database.kind === "pglite"
      ? await acquireDataDirLock(config.dataDir, "butler serve")
      : async () => {};
  const cleanups: (() => Promise<void>)[] = [releaseLock];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch((e) => log.error({ err: e }, "shutdown step failed"));
  };
  try {
    // The checkpoint sinks first: a checkpoint file that cannot be opened stops the start.
    const checkpointSinks: CheckpointSink[] = [];
    const cp = config.auditCheckpoints;
    if (cp?.file) checkpointSinks.push(await openCheckpointFile(cp.file, log));
    if (cp?.url) checkpointSinks.push(httpCheckpointSink(cp.url, log));
    for (const s of checkpointSinks) cleanups.push(() => s.close());
    const database = await openDatabase(config.database, log);
    cleanups.push(async () => {
      await database.close();
      await tightenDataDir(config.dataDir);
    });
    await migrate(database);
    // What the embedded database created, owner-only too (its directories are 0700, so files it
    // creates later are out of others' reach until the next tightening).
    await tightenDataDir(config.dataDir);
    // Push-config tokens and credentials are sealed under BUTLER_MASTER_KEY, or on the embedded
    // database under a key kept in the data directory (made the first time it is needed).
    const pushKey =
      config.database.kind === "pglite"
        ? await readPushKey(config.dataDir, config.masterKey() === undefined)
        : undefined;
    let publicUrl = config.publicUrl ?? listenUrl(config.host, config.port);
    // The adapters report refused requests and link codes to services built just below.
    let late: Services | undefined;
    const hooks: ChannelHooks = {
      async rejected(channel, reason, details) {
        await late?.audit.append({ type: `${channel}.request_rejected`, reason, details });
      },
      async ignored(channel, reason, details) {
        await late?.audit.append({ type: `${channel}.request_ignored`, reason, details });
      },
      // The platform's text is mended, never refused (see mendText): it would only be sent again.
      redeemLink: (code, channel, userId) =>
        late!.butler.redeemLinkCode(mendText(code), channel, mendText(userId)),
    };
    const channels: ApprovalChannel[] = [
      ...(edges.channels ?? []),
      ...(config.slack ? [new SlackChannel(config.slack, hooks, clock, log)] : []),
      ...(config.telegram ? [new TelegramChannel(config.telegram, hooks, log)] : []),
    ];
    const providers = await loadProviders(config.providers.dir);
    for (const f of providers.failures)
      for (const i of f.issues) log.error({ file: f.file }, `provider spec not loaded: ${formatIssue(i)}`);
    log.info({ providers: [...providers.providers.keys()] }, "providers loaded");
    // Provider credentials and webhook secrets from the environment are secrets from the start
    // (those in the vault are added when they are decrypted).
    for (const spec of providers.providers.values())
      for (const name of [spec.auth.credential, spec.webhooks?.secret])
        if (name) {
          try {
            secrets.add(name, config.credentialFromEnv(name));
          } catch {
            // An unreadable NAME_FILE: the call that needs it reports that.
          }
        }
    const services = createServices({
      providers,
      config,
      database,
      log,
      clock,
      actor: "admin-api",
      publicUrl: () => publicUrl,
      notifier: edges.notifier,
      channels,
      checkpointSinks,
      secrets,
      pushKey,
    });
    late = services;
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
    await services.changes.start();
    cleanups.push(() => services.changes.stop());
    await services.policies.refreshAll();
    const stopResync = services.policies.resyncEvery(30_000);
    cleanups.push(async () => stopResync());
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
    cleanups.push(() => services.audit.close());
    const checkpointer = services.checkpointer;
    if (checkpointer && cp) {
      const timer = setInterval(() => void checkpointer.tick(), Math.min(cp.everySeconds * 1000, 5_000));
      timer.unref();
      // Runs after the outbox and the sweeper stop (cleanups run in reverse): the audit queue is
      // drained first, so that the last checkpoint covers every event of this instance.
      cleanups.push(async () => {
        clearInterval(timer);
        await services.audit.close();
        await checkpointer.close();
      });
      log.info(
        {
          key_id: cp.key.keyId,
          every_events: cp.everyEvents,
          every_seconds: cp.everySeconds,
          sinks: checkpointSinks.map((s) => s.name),
        },
        "audit checkpoints are signed",
      );
    }
    // Registered after the audit log, so they stop before it closes (cleanups run in reverse):
    // the outbox worker and the sweeper write audit events.
    services.outbox.start();
    cleanups.push(() => services.outbox.stop());
    let sweeping: Promise<unknown> | undefined;
    const sweeper = setInterval(() => {
      sweeping ??= services.butler
        .sweep()
        .then(() => services.a2a.catchUp())
        .then(() => services.dashboardSessions.purge())
        .catch((e) => log.error({ err: e }, "sweep failed"))
        .finally(() => {
          sweeping = undefined;
        });
    }, 5_000);
    sweeper.unref();
    cleanups.push(async () => {
      clearInterval(sweeper);
      await sweeping;
    });
    const adminToken = config.adminToken ?? (await readOrCreateAdminToken(config.dataDir));
    secrets.add("admin token", adminToken);
    // Every secret known at start is registered by now: say which ones are too short to redact.
    for (const w of secrets.warnings) log.warn(w);
    let closing = false;
    // Liveness (/healthz) reports the database as last seen (up: it was just migrated) and never
    // waits for it; readiness (/readyz) asks it, within the database timeout.
    let databaseState: "up" | "down" = "up";
    let databaseCheckedAt = 0;
    let databaseCheck: Promise<void> | undefined;
    const pingDatabase = async () => {
      try {
        await database.db.execute(sql`SELECT 1`);
        databaseState = "up";
      } catch (e) {
        databaseState = "down";
        throw e;
      } finally {
        databaseCheckedAt = performance.now();
      }
    };
    const supervised: SupervisedChannel[] = [];
    const instanceId = newId("srv");
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
      checkReady: async () => {
        if (closing) throw new Error("shutting down");
        await pingDatabase();
      },
      components: () => {
        if (!databaseCheck && performance.now() - databaseCheckedAt > 1000)
          databaseCheck = pingDatabase()
            .catch(() => {})
            .finally(() => {
              databaseCheck = undefined;
            });
        return {
          database: databaseState,
          ...Object.fromEntries(supervised.map((c) => [c.kind, c.state()])),
        };
      },
    });
    cleanups.push(() => app.close());
    await app.listen({ host: config.host, port: config.port });
    // Started once the server listens. A platform that cannot be reached, or refuses the token,
    // never stops the server: the channel is reported degraded (GET /healthz) and retried in the
    // background. The first attempt is waited for a moment, so that a healthy channel is up when
    // the server says it serves.
    for (const channel of services.channels) {
      const c = superviseChannel(channel, (input) => services.butler.reviewFromChannel(input), log);
      supervised.push(c);
      cleanups.push(() => c.stop());
    }
    await Promise.race([
      Promise.all(supervised.map((c) => c.firstAttempt)),
      new Promise((r) => setTimeout(r, CHANNEL_FIRST_ATTEMPT_MS).unref()),
    ]);
    const addr = app.server.address();
    const port = typeof addr === "object" && addr ? addr.port : config.port;
    const url = listenUrl(config.host, port);
    // Providers served at the root of their own port, for SDKs that take no base path.
    const providerUrls: Record<string, string> = {};
    for (const [name, providerPort] of Object.entries(config.providers.ports)) {
      if (!providers.providers.has(name))
        throw new Error(
          `BUTLER_PROVIDER_PORTS names provider '${name}', which is not loaded (loaded: ${[...providers.providers.keys()].join(", ") || "none"})`,
        );
      const listener = buildProviderListener({
        provider: name,
        providers: services.providers,
        tokens: services.tokens,
        bodyLimitBytes: config.bodyLimitBytes,
        log,
      });
      cleanups.push(() => listener.close());
      await listener.listen({ host: config.host, port: providerPort });
      const a = listener.server.address();
      providerUrls[name] = listenUrl(config.host, typeof a === "object" && a ? a.port : providerPort);
      log.info({ provider: name, url: providerUrls[name] }, "provider served on its own port");
    }
    publicUrl = config.publicUrl ?? url;
    await writeServerInfo(config.dataDir, {
      pid: process.pid,
      url,
      instance: instanceId,
      startedAt: clock.now().toISOString(),
    });
    cleanups.push(() => removeServerInfo(config.dataDir));
    if (config.policyWatch && existsSync(config.policiesDir)) {
      services.policies.watch();
      cleanups.push(async () => services.policies.stopWatching());
    }
    log.info({ url, database: config.database.kind, policies: config.policiesDir }, "butler is serving");
    let closed: Promise<void> | undefined;
    return {
      app,
      url,
      providerUrls,
      services,
      adminToken,
      close() {
        closing = true;
        closed ??= cleanup();
        return closed;
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
