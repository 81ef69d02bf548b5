/**
 * One instance of the scale-out bench (bench/scale.ts): the real Butler server (startServer) on a
 * PostgreSQL database and a policies directory that other instances share, with a data directory
 * of its own (its admin token and server.json). Prints one JSON line once it serves:
 * `{ url, adminToken }`. Stops on SIGTERM, and also when its standard input closes (the bench
 * process went away without stopping it), so that no instance outlives the bench.
 *
 * Usage: scale-server.ts <DATABASE_URL> <POLICIES_DIR> <DATA_DIR>
 */
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/main.js";

const [databaseUrl, policiesDir, dataDir] = process.argv.slice(2);
if (!databaseUrl || !policiesDir || !dataDir)
  throw new Error("usage: scale-server.ts <DATABASE_URL> <POLICIES_DIR> <DATA_DIR>");

const server = await startServer(
  loadConfig({
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: "10",
    BUTLER_DATA_DIR: dataDir,
    POLICIES_DIR: policiesDir,
    POLICY_WATCH: "false",
    PORT: "0",
    LOG_LEVEL: "warn",
  }),
  createLogger("warn"),
);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.stdin.on("end", () => void stop());
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ url: server.url, adminToken: server.adminToken })}\n`);
