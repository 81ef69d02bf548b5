import { existsSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { FastifyInstance } from "fastify";
import type { ApprovalChannel, ChannelHooks } from "./channels/channel.js";
import { SlackChannel } from "./channels/slack/slack-channel.js";
import { type SupervisedChannel, superviseChannel } from "./channels/supervisor.js";
import { TelegramChannel } from "./channels/telegram/telegram-channel.js";
import { type Clock, systemClock } from "./clock.js";
import { type Config, listenUrl } from "./config.js";
import {
  acquireDataDirLock,
  ensureDataDir,
  readOrCreateAdminToken,
  removeServerInfo,
  writeServerInfo,
} from "./data-dir.js";
import { openDatabase } from "./db/client.js";
import { migrate } from "./db/migrate.js";
import { newId } from "./ids.js";
import type { Logger } from "./logger.js";
import { loadProviders } from "./providers/provider-gateway.js";
import { buildProviderListener } from "./providers/routes.js";
import { buildApp } from "./server/app.js";
import { mendText } from "./server/validation.js";
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
  /** The edges: how agents are told of outcomes, and the approval surfaces. */
  edges: Pick<ServiceOptions, "notifier" | "channels"> = {},
): Promise<RunningServer> {
  await ensureDataDir(config.dataDir);
  const releaseLock =
    config.database.kind === "pglite"
      ? await acquireDataDirLock(config.dataDir, "butler serve")
      : async () => {};
  const cleanups: (() => Promise<void>)[] = [releaseLock];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch((e) => log.error({ err: e }, "shutdown step failed"));
  };
  try {
    const database = await openDatabase(config.database, log);
    cleanups.push(() => database.close());
    await migrate(database);
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
    });
    late = services;
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
