import type { Command } from "../command.js";

/** The server itself, and its database. */
export const serveCommands: Command[] = [
  {
    name: "serve",
    usage: "",
    summary: "run the gateway (npm start)",
    positionals: [0, 0],
    example: "butler serve",
    project: true,
    run: async (a, io) => (await import("../run/serve.js")).serve(a, io),
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
