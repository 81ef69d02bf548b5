import { createAdmin } from "./admin/admin-service.js";
import { createTokenService } from "./agents/token-service.js";
import { createAuditLog } from "./audit/audit-log.js";
import type { Clock } from "./clock.js";
import type { Config } from "./config.js";
import { createChangeBus } from "./db/changes.js";
import type { Database } from "./db/client.js";
import { migrate } from "./db/migrate.js";
import { createGateway } from "./gateway/gateway-service.js";
import type { Logger } from "./logger.js";
import { createMetrics } from "./metrics.js";
import { createPolicyStore } from "./policy-store/policy-store.js";

/**
 * Builds every service on an open, migrated database, in dependency order. Used by `butler serve`
 * and by CLI commands that work on the database directly, so both run the same code.
 */
export function createServices(opts: {
  config: Pick<Config, "audit" | "policiesDir">;
  /** The server's public base URL (known only once it listens, when not configured). */
  publicUrl: () => string;
  database: Database;
  log: Logger;
  clock: Clock;
  actor: string;
}) {
  const { config, database, log, clock } = opts;
  const db = database.db;
  const audit = createAuditLog({
    database,
    clock,
    log,
    batchMax: config.audit.batchMax,
    queueMax: config.audit.queueMax,
  });
  const changes = createChangeBus(database, log);
  const tokens = createTokenService({ db, audit, changes, clock });
  const policies = createPolicyStore({ db, audit, changes, clock, log, policiesDir: config.policiesDir });
  const metrics = createMetrics({ auditQueueDepth: () => audit.depth() });
  const gateway = createGateway({ policies, audit, clock, metrics, publicUrl: opts.publicUrl });
  const admin = createAdmin({ db, tokens, policies, migrate: () => migrate(database), actor: opts.actor });
  return { database, audit, changes, tokens, policies, metrics, gateway, admin };
}

export type Services = ReturnType<typeof createServices>;
