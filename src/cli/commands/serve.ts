import type { Command, Parsed } from "../command.js";
import type { CliIo } from "../output.js";

/**
 * `butler serve`: before loading the server (a second or more), the data directory is marked as
 * having a server on its way up, so that CLI commands run meanwhile wait for it instead of opening
 * the embedded database themselves; the mark goes once the server listens, or fails to start.
 */
async function serve(_: Parsed, io: CliIo): Promise<number> {
  const { loadConfig } = await import("../../config.js");
  const config = loadConfig(io.env);
  let unmark = async () => {};
  if (config.database.kind === "pglite") {
    const { markServerStarting } = await import("../../data-dir.js");
    unmark = await markServerStarting(config.dataDir);
  }
  // unmark removes the mark only while it is this process's: calling it twice is harmless.
  try {
    return await (await import("../run/serve.js")).serve(config, io, unmark);
  } finally {
    await unmark();
  }
}

/** The server itself, and its database. */
export const serveCommands: Command[] = [
  {
    name: "serve",
    usage: "",
    summary: "run the gateway (npm start)",
    positionals: [0, 0],
    example: "butler serve",
    project: true,
    run: serve,
  },
  {
    name: "db migrate",
    usage: "",
    summary: "apply pending database migrations",
    positionals: [0, 0],
    example: "butler db migrate",
    admin: true,
    run: async (a, io) => (await import("../run/db.js")).dbMigrate(a, io),
  },
];
