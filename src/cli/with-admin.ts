import { existsSync } from "node:fs";
import { join } from "node:path";
import type { AdminOps } from "../admin/admin-service.js";
import { type Config, loadConfig } from "../config.js";
import {
  readAdminToken,
  readServerInfo,
  type ServerInfo,
  startingServerPid,
  waitForServerInfo,
} from "../data-dir.js";
import { AppError } from "../errors.js";
import { httpAdmin } from "./http-admin.js";
import { type CliIo, termSafe } from "./output.js";

/** What a command needs of the database, beyond the admin operations. */
export interface AdminNeeds {
  /** It may create the embedded database when there is none yet (`db migrate`); others refuse to. */
  create?: boolean;
}

/**
 * Runs `fn` with the admin operations: through the running server when there is one (waiting for
 * one that is starting), otherwise directly on the database (taking the embedded database's lock
 * for the duration). The database is imported only on that last path: through a server, the CLI
 * loads no database driver.
 */
export async function withAdmin<T>(
  io: CliIo,
  fn: (ops: AdminOps, via: "server" | "database") => Promise<T>,
  needs: AdminNeeds = {},
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
  const info = (await readServerInfo(config.dataDir)) ?? (await startingServer(config, io));
  if (info) return fn(await serverAdmin(config, info), "server");
  if (
    config.database.kind === "pglite" &&
    !needs.create &&
    !existsSync(join(config.database.dataDir, "PG_VERSION"))
  )
    throw new AppError(
      "NOT_FOUND",
      `no Butler database in ${config.dataDir} (the data directory, from ${io.dataDirFrom ?? "BUTLER_DATA_DIR"}): run butler in the project's directory, or set BUTLER_DATA_DIR to its data directory (npm start makes one in ./.butler)`,
    );
  const { withDatabase } = await import("./with-database.js");
  return withDatabase(config, (ops) => fn(ops, "database"));
}

/**
 * The server that holds the embedded database's lock but has not written server.json yet: it is
 * starting, so the command waits for it (BUTLER_CLI_WAIT_MS) rather than failing on the lock.
 */
async function startingServer(config: Config, io: CliIo): Promise<ServerInfo | undefined> {
  if (config.database.kind !== "pglite") return undefined;
  const pid = await startingServerPid(config.dataDir);
  if (pid === undefined) return undefined;
  io.stderr.write(`butler: waiting for the server starting in ${termSafe(config.dataDir)} (pid ${pid})…\n`);
  const r = await waitForServerInfo(config.dataDir, pid, config.cliWaitMs);
  if ("info" in r) return r.info;
  if ("gone" in r) return readServerInfo(config.dataDir);
  throw new AppError(
    "UNAVAILABLE",
    `the server starting in ${config.dataDir} (pid ${pid}) was not ready within ${config.cliWaitMs} ms (BUTLER_CLI_WAIT_MS); see its log, or try again when it is`,
  );
}

/** The admin API of the server recorded in server.json, once it answers as itself. */
async function serverAdmin(config: Config, info: ServerInfo): Promise<AdminOps> {
  const token = config.adminToken ?? (await readAdminToken(config.dataDir));
  if (!token) {
    throw new AppError(
      "UNAUTHENTICATED",
      `a server runs at ${info.url} but its admin token was not found in ${config.dataDir}`,
    );
  }
  // server.json names a live pid; make sure the process answering at its URL is that server
  // (a reused pid must not receive the admin token) before sending the token there.
  // Asked with a deadline: a listener that never answers must not hold the command forever.
  let instance: unknown;
  try {
    const health = await fetch(`${info.url}/healthz`, { signal: AbortSignal.timeout(5_000) });
    instance = ((await health.json()) as { instance?: unknown }).instance;
  } catch {
    instance = undefined;
  }
  if (typeof instance !== "string" || instance !== info.instance) {
    throw new AppError(
      "UNAVAILABLE",
      `${config.dataDir}/server.json names a server at ${info.url} (pid ${info.pid}) that does not answer as itself; if it is gone, remove server.json`,
    );
  }
  return httpAdmin(info.url, token);
}
