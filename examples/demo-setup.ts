/**
 * What both demos start from (`npm run demo`, `npm run demo:mcp`): a stand-in Stripe on loopback,
 * the seed policy in a temporary directory, and a Butler server on the embedded database there;
 * and how the demos print who says what.
 */
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/main.js";
import { startStandInStripe } from "./stand-in-stripe.js";

const color = process.stdout.isTTY && !process.env.NO_COLOR;
export const paint = (code: number, s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
const say = (who: string, code: number) => (text: string) =>
  console.log(`${paint(code, who.padEnd(9))} ${text}`);
export const agentSays = say("agent", 36);
export const approverSays = say("jordan", 33);
export const butlerSays = say("butler", 35);

/** The seed scenario's server, its stand-in Stripe and temporary directory; `close` removes all three. */
export async function startDemo(prefix: string) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const stripeKey = "sk_test_demo_only";
  const stripe = await startStandInStripe(stripeKey);
  const policies = join(dir, "policies");
  await mkdir(policies);
  await copyFile(
    fileURLToPath(new URL("../policies/project-billing.yaml", import.meta.url)),
    join(policies, "project-billing.yaml"),
  );
  const server = await startServer(
    loadConfig({
      BUTLER_DATA_DIR: join(dir, "data"),
      POLICIES_DIR: policies,
      PROVIDERS_DIR: fileURLToPath(new URL("../providers", import.meta.url)),
      BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`,
      STRIPE_API_KEY: stripeKey,
      PORT: "0",
      LOG_LEVEL: "silent",
      POLICY_WATCH: "false",
    }),
    createLogger("silent"),
  );
  return {
    dir,
    stripe,
    stripeKey,
    server,
    async close() {
      await server.close();
      await stripe.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
