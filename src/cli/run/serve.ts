import { systemClock } from "../../clock.js";
import { type Config, configuredSecrets } from "../../config.js";
import { createLogger } from "../../logger.js";
import { startServer } from "../../main.js";
import { createSecrets } from "../../secrets.js";
import type { CliIo } from "../output.js";

/** Runs the server of `config` (read once, by the command) until SIGTERM or SIGINT; `listening` is called once it listens. */
export async function serve(config: Config, io: CliIo, listening: () => Promise<void>): Promise<number> {
  // One set of secrets for the log and the services: credentials read later are redacted in both.
  const secrets = createSecrets(configuredSecrets(config));
  const log = createLogger(config.logLevel, undefined, secrets, config.logFormat);
  const server = await startServer(config, log, systemClock, { secrets });
  await listening();
  io.stderr.write(
    `Butler is serving at ${server.url} (database: ${config.database.kind}, audit durability: ${server.services.audit.durability}, policies: ${config.policiesDir})\n`,
  );
  // The embedded default is for trying Butler out: sign the first approver in to the dashboard at once.
  if (config.database.kind === "pglite") {
    const first = [...server.services.policies.index().projects.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .flatMap((p) => p.document.approvers.map((a) => a.id))[0];
    if (first) {
      const l = await server.services.admin.createDashboardLink(first);
      io.stderr.write(`Dashboard: open ${l.url} to sign in as ${first} (one time, until ${l.expires_at})\n`);
    } else io.stderr.write(`Dashboard: ${server.url}/dashboard (no policy names an approver yet)\n`);
  }
  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      log.info({ signal }, "shutting down");
      server.close().then(resolveStop, (e) => {
        log.error({ err: e }, "shutdown failed");
        resolveStop();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    process.on("SIGHUP", () => {
      server.services.policies
        .importDirectory("sighup")
        .catch((e) => log.error({ err: e }, "policy reload failed"));
    });
  });
  return 0;
}
