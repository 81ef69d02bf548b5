/**
 * Benchmark child process: the real Butler server (startServer, PostgreSQL, with the audit
 * durability given) and, in the same process, a bare fastify JSON endpoint as the baseline. Prints
 * one JSON line with their addresses.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { startStandInStripe } from "../examples/stand-in-stripe.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/main.js";

const databaseUrl = process.argv[2];
if (!databaseUrl)
  throw new Error("usage: server.ts <DATABASE_URL> [sync|async-deny|async] [stand-in Stripe URL]");
const durability = process.argv[3] ?? "sync";
const dataDir = await mkdtemp(join(tmpdir(), "butler-bench-"));
// The seed policy, and a project whose agent may read Stripe charges through the proxy.
const policiesDir = join(dataDir, "policies");
await mkdir(policiesDir);
await copyFile("policies/project-billing.yaml", join(policiesDir, "project-billing.yaml"));
await writeFile(
  join(policiesDir, "bench-proxy.yaml"),
  "project: bench-proxy\nagents: [proxy-agent]\ngrants:\n  - service: stripe\n    actions: [charges:read]\n    resources: [stripe.com/v1/charges]\n",
);
const stripeKey = "sk_test_bench";
// The stand-in Stripe: in this process, or the one at the URL given (its own process).
const stripe = process.argv[4]
  ? { url: process.argv[4], close: async () => {} }
  : await startStandInStripe(stripeKey);
const config = loadConfig({
  DATABASE_URL: databaseUrl,
  DATABASE_POOL_SIZE: "10",
  BUTLER_DATA_DIR: dataDir,
  POLICIES_DIR: policiesDir,
  PROVIDERS_DIR: "providers",
  BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`,
  STRIPE_API_KEY: stripeKey,
  POLICY_WATCH: "false",
  PORT: "0",
  LOG_LEVEL: "warn",
  AUDIT_DURABILITY: durability,
});
const server = await startServer(config, createLogger("warn"));
const { token } = await server.services.admin.createAgentToken("billing-reconciler-1", "project-billing");
const proxyToken = (await server.services.admin.createAgentToken("proxy-agent", "bench-proxy")).token;

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
  `${JSON.stringify({ url: server.url, bareUrl, token, adminToken: server.adminToken, stripeUrl: stripe.url, stripeKey, proxyToken })}\n`,
);
process.on("SIGTERM", async () => {
  await bare.close();
  await server.close();
  await stripe.close();
  await rm(dataDir, { recursive: true, force: true });
  process.exit(0);
});
