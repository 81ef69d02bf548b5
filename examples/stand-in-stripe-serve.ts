/**
 * `npm run stand-in:stripe`: the local stand-in Stripe of the demo and the tests, on its own, for
 * trying the provider examples without a Stripe account or network.
 *
 *   npm run stand-in:stripe                       # http://127.0.0.1:12110
 *   npm run stand-in:stripe -- --port 0           # any free port
 *
 * The stand-in accepts the key in STRIPE_API_KEY (or a made-up test key when unset) and prints how
 * to point Butler at it. Ctrl-C stops it.
 */
import { parseArgs } from "node:util";
import { startStandInStripe } from "./stand-in-stripe.js";

const { values } = parseArgs({
  options: { port: { type: "string", default: "12110" }, key: { type: "string" } },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(
    `stand-in-stripe: --port must be a port number (0 for any free one), not ${values.port}\n`,
  );
  process.exit(2);
}
const key = values.key ?? process.env.STRIPE_API_KEY ?? "sk_test_butler_stand_in_0000";
const stripe = await startStandInStripe(key, {
  port,
  onRequest: (r) => {
    const auth = r.headers.authorization === `Bearer ${key}` ? "key ok" : "wrong or no key: 401";
    process.stdout.write(`${r.method} ${r.path} (${auth})\n`);
  },
});
process.stdout.write(
  [
    `Stand-in Stripe at ${stripe.url} (accepts the key ${key})`,
    "It answers GET /v1/charges and /v1/customers, POST /v1/refunds and /v1/payment_intents (form bodies, Idempotency-Key replays).",
    "Point Butler at it, in another terminal:",
    `  BUTLER_PROVIDER_URLS=stripe=${stripe.url} STRIPE_API_KEY=${key} npm start`,
    "",
  ].join("\n"),
);
const stop = () => void stripe.close().then(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
