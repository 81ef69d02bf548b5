/**
 * Benchmark child process: the real Butler server (startServer, PostgreSQL) and, in the same
 * process, a bare fastify JSON endpoint as the baseline. Prints one JSON line with their addresses.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/main.js";

const databaseUrl = process.argv[2];
if (!databaseUrl) throw new Error("usage: server.ts <DATABASE_URL>");
const dataDir = await mkdtemp(join(tmpdir(), "butler-bench-"));
const config = loadConfig({
  DATABASE_URL: databaseUrl,
  DATABASE_POOL_SIZE: "10",
  BUTLER_DATA_DIR: dataDir,
  POLICIES_DIR: "policies",
  POLICY_WATCH: "false",
  PORT: "0",
  LOG_LEVEL: "warn",
});
const server = await startServer(config, createLogger("warn"));
const { token } = await server.services.admin.createAgentToken("billing-reconciler-1", "project-billing");

const bare = Fastify({ logger: false });
bare.post("/bare", async (req) => {
  const body = req.body as { action?: string; resource?: string };
  return {
    decision: "ALLOW",
    reason: "bare",
    action: body.action,
    resource: body.resource,
    http_status: 200,
  };
});
const bareUrl = await bare.listen({ host: "127.0.0.1", port: 0 });

process.stdout.write(
  `${JSON.stringify({ url: server.url, bareUrl, token, adminToken: server.adminToken })}\n`,
);
process.on("SIGTERM", async () => {
  await bare.close();
  await server.close();
  process.exit(0);
});
