import { dirname, join } from "node:path";
import { type A2AService, createA2A } from "./a2a/a2a-service.js";
import { pushHandler } from "./a2a/push-delivery.js";
import { createPushSealer } from "./a2a/push-secrets.js";
import { createAdmin } from "./admin/admin-service.js";
import { createTokenService } from "./agents/token-service.js";
import { type AuditLog, createAuditLog } from "./audit/audit-log.js";
import { type Checkpointer, type CheckpointSink, createCheckpointer } from "./audit/checkpointer.js";
import { createApproverTokens } from "./butler/approver-tokens.js";
import { type Butler, createButler } from "./butler/butler-service.js";
import type { AlertPress } from "./butler/context.js";
import type { AgentNotifier } from "./butler/notifier.js";
import { alertHandler } from "./channels/alert-delivery.js";
import { cardHandlers } from "./channels/card-delivery.js";
import type { ApprovalChannel } from "./channels/channel.js";
import { type ChannelAdapter, channelHooks } from "./channels/channel-hooks.js";
import { createTelegramAdmin } from "./channels/telegram/telegram-admin.js";
import type { Clock } from "./clock.js";
import { type Config, configuredSecrets } from "./config.js";
import { createDashboardSessions } from "./dashboard/sessions.js";
import { type ChangeBus, createChangeBus } from "./db/changes.js";
import type { Database } from "./db/client.js";
import { migrate } from "./db/migrate.js";
import { createAlertActions } from "./gateway/alert-actions.js";
import { type Alerts, createAlerts, driftAlert, trustAlert } from "./gateway/alerts.js";
import { createBehaviour } from "./gateway/behaviour.js";
import { createGateway } from "./gateway/gateway-service.js";
import { createPacts } from "./gateway/pacts.js";
import { createRateLimiter } from "./gateway/rate-limits.js";
import { createIncidents, createTrust } from "./gateway/trust.js";
import { createUsage } from "./gateway/usage.js";
import { createOneShots } from "./grants/one-shot.js";
import type { Logger } from "./logger.js";
import { deleteEndedMcpSessions, touchMcpSession } from "./mcp/session-repo.js";
import { createMcpStreams } from "./mcp/streams.js";
import { createMetrics } from "./metrics.js";
import { combineWorkers, createOutboxWorker, type OutboxHandlers } from "./outbox/outbox.js";
import type { OperationRef } from "./policy/blast-radius.js";
import { createPolicyStore, type PolicyStore } from "./policy-store/policy-store.js";
import { createBudgets } from "./providers/budgets.js";
import { createCredentials } from "./providers/credentials.js";
import { createMcpPins } from "./providers/mcp-pins.js";
import { createMcpUpstreams } from "./providers/mcp-upstream.js";
import { createProviderGateway, type ProviderSet } from "./providers/provider-gateway.js";
import { createVault } from "./providers/vault.js";
import { createWebhookEvents } from "./providers/webhook-events.js";
import { createSecrets, type Secrets } from "./secrets.js";
import { PACKAGE_VERSION } from "./version.js";

/** How long a dashboard sign-in lasts. */
const DASHBOARD_SESSION_SECONDS = 12 * 3600;

export interface ServiceOptions {
  config: Pick<Config, "audit" | "policiesDir"> &
    Partial<
      Pick<
        Config,
        "telegram" | "a2a" | "providers" | "credentialFromEnv" | "masterKey" | "auditCheckpoints" | "dataDir"
      >
    >;
  /**
   * Where signed checkpoints go outside the database (opened by the caller). Checkpoints are
   * written when the config has a signing key and sinks are given (`butler serve`).
   */
  checkpointSinks?: readonly CheckpointSink[] | undefined;
  /** Provider specs, loaded from the providers directory (none: no provider calls). */
  providers?: ProviderSet | undefined;
  /** The server's public base URL (known only once it listens, when not configured). */
  publicUrl: () => string;
  database: Database;
  log: Logger;
  clock: Clock;
  actor: string;
  /** Told of every decision besides the A2A tasks waiting on it (tests use a recording one). */
  notifier?: AgentNotifier | undefined;
  /** Approval surfaces that get a card for every request. */
  channels?: readonly ApprovalChannel[] | undefined;
  /** Approval surfaces built here, once what they report to exists (Slack and Telegram in `butler serve`). */
  adapters?: readonly ChannelAdapter[] | undefined;
  /**
   * The process's secrets (the logger's too): errors are redacted with it before they are stored
   * or audited, and credentials read at run time are added to it. Default: the configuration's.
   */
  secrets?: Secrets | undefined;
  /**
   * The key that seals A2A push-config tokens and credentials when BUTLER_MASTER_KEY is not set
   * (the embedded database's data-directory key); with both, BUTLER_MASTER_KEY seals and this one
   * still opens what it sealed.
   */
  pushKey?: Buffer | undefined;
}

/**
 * Builds every service on an open, migrated database, in dependency order. Used by `butler serve`
 * and by CLI commands that work on the database directly, so both run the same code.
 */
export function createServices(opts: ServiceOptions) {
  const { config, database, log, clock } = opts;
  const secrets = opts.secrets ?? createSecrets(configuredSecrets(config));
  const redact = (text: string) => secrets.redact(text);
  const db = database.db;
  const { audit, checkpointer } = auditLog(opts, secrets);
  const changes = createChangeBus(database, log);
  const tokens = createTokenService({ db, audit, changes, clock });
  const approverTokens = createApproverTokens({ db, audit, clock });
  const policies = createPolicyStore({ db, audit, changes, clock, log, policiesDir: config.policiesDir });
  const metrics = createMetrics({ auditQueueDepth: () => audit.depth() });
  // Security alerts' buttons reach the alert actions, made below with the Butler.
  const hooks = channelHooks({ db, audit, clock, log, policies, alertAction: (i) => alertActions.act(i) });
  const channels = [...(opts.channels ?? []), ...(opts.adapters ?? []).map((build) => build(hooks))];
  const oneShots = createOneShots({ db, audit, clock });
  // Per agent: rate-limit counters, tool usage and drift, trust scores, pacts; and security alerts.
  const { alerts, ...perAgent } = agentState(
    { db, audit, clock, changes, policies, log },
    { publicUrl: opts.publicUrl, onEnqueued: () => outbox.wake() },
  );
  const gateway = createGateway({
    policies,
    audit,
    clock,
    metrics,
    publicUrl: opts.publicUrl,
    oneShots,
    log,
    ...perAgent,
  });
  const butler = createButler({
    ...{ db, audit, policies, clock, log },
    channels: channels.map((c) => c.kind),
    notifyAgents: true,
    publicUrl: opts.publicUrl,
    onEnqueued: () => outbox.wake(),
    onRevoked: (project, agent, eventId) => perAgent.incidents(project, agent, "grant_revoked", eventId),
    operations: operationRefs(opts.providers),
    rememberPaths: rememberPaths(config),
    ...{ alerts, alertAction: (i: AlertPress) => alertActions.act(i) },
  });

  const alertActions = createAlertActions({ db, audit, clock, log, policies, butler, trust: perAgent.trust });
  const pushSealer = createPushSealer([config.masterKey?.(), opts.pushKey]);
  const a2a = createA2A({
    db,
    butler,
    policies,
    audit,
    changes,
    clock,
    log,
    publicUrl: opts.publicUrl,
    pushAllowlist: config.a2a?.pushAllowlist ?? [],
    pushSealer,
    onEnqueued: () => outbox.wake(),
    version: PACKAGE_VERSION,
  });

  // Credentials are read when an alert is sent (they are made below).
  const credential = (name: string) => credentials.get(name);
  const outbox = outboxWorkers(opts, { audit, a2a, butler, channels, redact, credential });
  const vault = createVault({
    db,
    audit,
    clock,
    masterKey: config.masterKey?.(),
    changes,
    onChanged: () => credentials.invalidate(),
  });
  const credentials = createCredentials({ fromEnv: config.credentialFromEnv, vault, secrets, changes });
  const providerSet = opts.providers ?? { providers: new Map(), failures: [] };
  const { mcpPins, mcpUpstreams } = mcpClients({ db, audit, clock, log, credentials }, providerSet);
  const { providers, behaviour } = providerGateway(
    { db, audit, clock, log, policies, config },
    { providerSet, mcpUpstreams, gateway, credentials, butler, oneShots, alerts, perAgent },
  );
  const dashboardSessions = createDashboardSessions({
    db,
    audit,
    clock,
    approverTokens,
    ttlSeconds: DASHBOARD_SESSION_SECONDS,
  });
  // MCP sessions' streams: told of every change any instance publishes (list_changed, revoked tokens).
  const mcpStreams = createMcpStreams({
    tokens,
    log,
    // Asked at every keep-alive: a session whose stream is open is in use, and is renewed.
    sessionLive: async (hash) => (await touchMcpSession(db, hash, clock.now())) !== undefined,
  });
  /** Deletes MCP sessions that ended or expired a day ago or more (the sweeper calls it). */
  const purgeMcpSessions = () => deleteEndedMcpSessions(db, new Date(clock.now().getTime() - 86_400_000));
  changes.subscribe((c) => {
    // A credential stored or deleted (on any instance): MCP connections made with the old one close.
    if (c.kind === "credentials" || c.kind === "resync")
      mcpUpstreams
        .reconnect()
        .catch((e: unknown) => log.error({ err: e }, "MCP connections could not be closed"));
    mcpStreams.changed(c).catch((e: unknown) => log.error({ err: e }, "MCP streams could not take a change"));
  });
  const admin = createAdmin({
    dashboard: dashboardSessions,
    publicUrl: opts.publicUrl,
    telegram: createTelegramAdmin(config.telegram, opts.publicUrl),
    db,
    tokens,
    approverTokens,
    butler,
    policies,
    vault,
    mcpPins,
    trust: perAgent.trust,
    pacts: perAgent.pacts,
    clock,
    migrate: () => migrate(database),
    actor: opts.actor,
  });
  return {
    pushSealer,
    dashboardSessions,
    database,
    audit,
    checkpointer,
    changes,
    tokens,
    approverTokens,
    policies,
    metrics,
    gateway,
    butler,
    a2a,
    providers,
    mcpPins,
    mcpUpstreams,
    mcpStreams,
    purgeMcpSessions,
    // Rate limits, tool usage and drift (the sweeper calls usage.sweep), trust, API-set pacts (load before serving).
    ...perAgent,
    /** Deletes rate-limit counters that can no longer count (the sweeper calls it). */
    purgeRateCounts: () => perAgent.rateLimits.purge(clock.now()),
    /** Deletes spending keys no retry can come for any more (the sweeper calls it). */
    purgeSpendKeys: () => behaviour.purgeSpendKeys(),
    outbox,
    admin,
    channels,
    alerts,
  };
}

export type Services = ReturnType<typeof createServices>;

function agentState(
  deps: {
    db: Database["db"];
    audit: AuditLog;
    clock: Clock;
    changes: ChangeBus;
    policies: PolicyStore;
    log: Logger;
  },
  opts: { publicUrl: () => string; onEnqueued: () => void },
) {
  const alerts = createAlerts({ ...deps, ...opts });
  const trust = createTrust({
    ...deps,
    onLowered: (tx, change) => trustAlert(alerts, deps.policies, tx, change),
  });
  return {
    alerts,
    trust,
    // Incidents outside a decision (budget refusals, provider events, revoked grants) lower trust scores.
    incidents: createIncidents({ trust, policies: deps.policies, log: deps.log }),
    rateLimits: createRateLimiter(deps.db),
    // A drift turning major (or minor) and a trust score falling below a rule's line are alerts.
    usage: createUsage({ ...deps, onDrift: (tx, change) => driftAlert(alerts, tx, change) }),
    pacts: createPacts(deps),
  };
}

/**
 * The gateway in the call path: providers, budgets, webhooks, and what provider events mean for
 * agents' behaviour (pact, drift, trust; incidents outside a decision lower trust scores).
 */
function providerGateway(
  deps: {
    db: Database["db"];
    audit: AuditLog;
    clock: Clock;
    log: Logger;
    policies: PolicyStore;
    config: ServiceOptions["config"];
  },
  parts: {
    providerSet: ProviderSet;
    mcpUpstreams: ReturnType<typeof mcpClients>["mcpUpstreams"];
    gateway: ReturnType<typeof createGateway>;
    credentials: { get(name: string): Promise<string | undefined> };
    butler: Butler;
    oneShots: ReturnType<typeof createOneShots>;
    alerts: Alerts;
    perAgent: Omit<ReturnType<typeof agentState>, "alerts">;
  },
) {
  const { db, audit, clock, log, policies, config } = deps;
  const { incidents } = parts.perAgent;
  const behaviour = createBehaviour({ db, clock, log, audit, policies, ...parts.perAgent, incidents });
  const providers = createProviderGateway({
    providers: parts.providerSet,
    mcp: parts.mcpUpstreams,
    gateway: parts.gateway,
    audit,
    clock,
    log,
    credential: (name) => parts.credentials.get(name),
    baseUrls: config.providers?.baseUrls ?? {},
    budgets: createBudgets({ db, clock }),
    projectBudgets: (project) => policies.index().projects.get(project)?.document.budgets ?? [],
    butler: parts.butler,
    oneShots: parts.oneShots,
    webhookEvents: createWebhookEvents({ db, audit, clock }),
    behaviour,
    alerts: parts.alerts,
    incidents,
  });
  return { providers, behaviour };
}

/** Where approve-and-remember writes rules: the policies directory, or patches in the data directory. */
function rememberPaths(config: ServiceOptions["config"]) {
  const patchDir = join(config.dataDir ?? dirname(config.policiesDir), "policy-patches");
  return { policiesDir: config.policiesDir, patchDir };
}

/** Every loaded provider operation, as a proposal's blast radius names it. */
function operationRefs(set: ProviderSet | undefined): OperationRef[] {
  return [...(set?.providers.values() ?? [])].flatMap((p) =>
    [...p.operations.values()].map((o) => ({
      provider: p.name,
      operation: o.name,
      method: o.method,
      endpoint: o.endpoint,
      action: o.action,
      resource: o.resource,
    })),
  );
}

/** Butler as an MCP client of the servers behind it (connected when first needed), and their tools' pins. */
function mcpClients(
  deps: {
    db: Database["db"];
    audit: AuditLog;
    clock: Clock;
    log: Logger;
    credentials: { get(name: string): Promise<string | undefined> };
  },
  providers: ProviderSet,
) {
  const mcpPins = createMcpPins(deps);
  const mcpUpstreams = createMcpUpstreams(
    {
      pins: mcpPins,
      clock: deps.clock,
      log: deps.log,
      credential: (n) => deps.credentials.get(n),
      version: PACKAGE_VERSION,
    },
    [...providers.providers.values()].filter((p) => p.mcp),
  );
  return { mcpPins, mcpUpstreams };
}

/** The audit log, and its checkpointer when the configuration signs checkpoints and sinks are given. */
function auditLog(opts: ServiceOptions, secrets: Secrets) {
  const { config, database, log, clock } = opts;
  let checkpointer: Checkpointer | undefined;
  const audit = createAuditLog({
    database,
    clock,
    log,
    batchMax: config.audit.batchMax,
    queueMax: config.audit.queueMax,
    durability: config.audit.durability,
    onWritten: (seq) => checkpointer?.noteCommitted(seq),
    redact: (text) => secrets.redact(text),
    redactKnown: (text) => secrets.redactKnown(text),
  });
  const cp = config.auditCheckpoints;
  if (cp && opts.checkpointSinks) {
    checkpointer = createCheckpointer({
      database,
      audit,
      clock,
      log,
      key: cp.key,
      everyEvents: cp.everyEvents,
      everyMs: cp.everySeconds * 1000,
      sinks: opts.checkpointSinks,
    });
  }
  return { audit, checkpointer };
}

/**
 * The outbox's workers: one for what reaches agents and approvers (notifications, cards), one for
 * pushes to receivers the agents chose (see push-delivery.ts), so that a slow receiver delays only
 * other pushes.
 */
function outboxWorkers(
  opts: ServiceOptions,
  parts: {
    audit: AuditLog;
    a2a: A2AService;
    butler: Butler;
    channels: readonly ApprovalChannel[];
    redact: (text: string) => string;
    credential: (name: string) => Promise<string | undefined>;
  },
) {
  const { config, database, log, clock } = opts;
  const { audit, a2a, redact } = parts;
  const db = database.db;
  const handlers: OutboxHandlers = {
    async "agent.notify"(n) {
      const tasks = await a2a.notifier.notify(n);
      await opts.notifier?.notify(n);
      return {
        auditType: "agent.notified",
        agent: n.agent,
        project: n.project,
        details: { request_id: n.requestId, notification: n.type, grant_id: n.grantId, a2a_tasks: tasks },
      };
    },
    ...cardHandlers(parts.butler, parts.channels),
    ...alertHandler({ channels: parts.channels, credential: parts.credential, now: () => clock.now() }),
  };
  const pushes = pushHandler(a2a, config.a2a?.pushAllowlist ?? []);
  return combineWorkers([
    createOutboxWorker({ db, audit, clock, log, handlers, redact }),
    createOutboxWorker({ db, audit, clock, log, handlers: pushes, redact }),
  ]);
}
