import type { AgentIdentity } from "../../src/agents/token-service.js";
import type { AgentNotifier } from "../../src/butler/notifier.js";
import type { ApprovalChannel } from "../../src/channels/channel.js";
import type { Clock } from "../../src/clock.js";
import type { Database } from "../../src/db/client.js";
import type { Logger } from "../../src/logger.js";
import { createLogger } from "../../src/logger.js";
import { buildApp } from "../../src/server/app.js";
import { createServices, type Services } from "../../src/services.js";

/** The real services on a test database, as an instance of the server has them (without HTTP). */
export async function startServices(opts: {
  database: Database;
  policiesDir: string;
  clock: Clock;
  notifier?: AgentNotifier;
  channels?: ApprovalChannel[];
}): Promise<Services> {
  const services = createServices({
    config: {
      audit: { batchMax: 200, queueMax: 100_000, durability: "sync" },
      policiesDir: opts.policiesDir,
    },
    database: opts.database,
    log: createLogger("silent"),
    clock: opts.clock,
    actor: "test",
    publicUrl: () => "http://butler.test",
    notifier: opts.notifier,
    channels: opts.channels,
  });
  await services.changes.start();
  await services.policies.refreshAll();
  return services;
}

export async function stopServices(s: Services | undefined): Promise<void> {
  if (!s) return;
  await s.outbox.stop();
  await s.audit.close();
  await s.changes.stop();
}

/** An agent identity as a token would give it (for calling services directly). */
export function agentIdentity(agent: string, project: string): AgentIdentity {
  return { agent, project, tokenId: "tok_test0000000000" };
}

/** The HTTP API of `services` (agents, approvers, admin, A2A) on loopback, as an instance serves it. */
export async function listenOn(
  services: Services,
  log: Logger,
  adminToken = `bta_${"x".repeat(40)}`,
): Promise<{ app: Awaited<ReturnType<typeof buildApp>>; url: string }> {
  const app = await buildApp({
    log,
    bodyLimitBytes: 65536,
    trustProxy: false,
    tokens: services.tokens,
    approverTokens: services.approverTokens,
    butler: services.butler,
    gateway: services.gateway,
    metrics: services.metrics,
    admin: services.admin,
    a2a: services.a2a,
    adminToken,
    instanceId: "srv_test",
    auditDurability: services.audit.durability,
    checkReady: async () => {},
  });
  return { app, url: await app.listen({ host: "127.0.0.1", port: 0 }) };
}
