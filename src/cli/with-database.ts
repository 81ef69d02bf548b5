import { userInfo } from "node:os";
import type { AdminOps } from "../admin/admin-service.js";
import { systemClock } from "../clock.js";
import { type Config, configuredSecrets, listenUrl } from "../config.js";
import { acquireDataDirLock, ensureDataDir, tightenDataDir } from "../data-dir.js";
import { openDatabase } from "../db/client.js";
import { migrate } from "../db/migrate.js";
import { createLogger } from "../logger.js";
import { createSecrets } from "../secrets.js";
import { createServices } from "../services.js";

/**
 * Runs `fn` with the admin operations directly on the database (when no server runs): migrated
 * first, with the embedded database's lock held for the duration. The CLI imports this module only
 * on that path: it is what loads the database driver and every service.
 */
export async function withDatabase<T>(config: Config, fn: (ops: AdminOps) => Promise<T>): Promise<T> {
  const secrets = createSecrets(configuredSecrets(config));
  const log = createLogger(
    config.logLevel === "info" ? "warn" : config.logLevel,
    undefined,
    secrets,
    config.logFormat,
  );
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
