import { userInfo } from "node:os";
import type { AdminOps } from "../admin/admin-service.js";
import { systemClock } from "../clock.js";
import { type Config, configuredSecrets, listenUrl, loadConfig } from "../config.js";
import {
  acquireDataDirLock,
  ensureDataDir,
  readAdminToken,
  readServerInfo,
  tightenDataDir,
} from "../data-dir.js";
import { openDatabase } from "../db/client.js";
import { migrate } from "../db/migrate.js";
import { AppError } from "../errors.js";
import { createLogger } from "../logger.js";
import { createSecrets } from "../secrets.js";
import { createServices } from "../services.js";
import { httpAdmin } from "./http-admin.js";
import type { CliIo } from "./output.js";

/**
 * Runs `fn` with the admin operations: through the running server when there is one, otherwise
 * directly on the database (taking the embedded database's lock for the duration).
 */
export async function withAdmin<T>(
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
