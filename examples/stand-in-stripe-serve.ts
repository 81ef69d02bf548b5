/**
 * `npm run stand-in:stripe`: the local stand-in Stripe of the demo and the tests, on its own, for
 * trying the provider examples without a Stripe account or network.
 *
 *   npm run stand-in:stripe                       # http://127.0.0.1:12110
 *   npm run stand-in:stripe -- --port 0           # any free port
 *   npm run stand-in:stripe -- --key sk_test_x    # another made-up key (a live one is refused)
 *
 * The stand-in accepts a made-up test key (or the one given with --key; STRIPE_API_KEY is not
 * read, as it may hold a real key) and prints how to point Butler at it. Ctrl-C stops it.
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
// The made-up key unless one is given: a STRIPE_API_KEY in the shell may be a real one, and this
// prints its key. A live key is refused outright (this is a stand-in).
const MADE_UP = "sk_test_butler_stand_in_0000";
const key = values.key ?? MADE_UP;
if (key.startsWith("sk_live_")) {
  process.stderr.write("stand-in-stripe: --key is a live Stripe key; give it a made-up test key\n");
  process.exit(2);
}
const shown = key === MADE_UP ? key : "<the key given with --key>";
const stripe = await startStandInStripe(key, {
  port,
  onRequest: (r) => {
    const auth = r.headers.authorization === `Bearer ${key}` ? "key ok" : "wrong or no key: 401";
    process.stdout.write(`${r.method} ${r.path} (${auth})\n`);
  },
});
process.stdout.write(
  [
    `Stand-in Stripe at ${stripe.url} (accepts the key ${shown})`,
    "It answers GET /v1/charges and /v1/customers, POST /v1/refunds and /v1/payment_intents (form bodies, Idempotency-Key replays).",
    "Point Butler at it, in another terminal:",
    `  BUTLER_PROVIDER_URLS=stripe=${stripe.url} STRIPE_API_KEY=${shown} npm start`,
    "",
  ].join("\n"),
);
const stop = () => void stripe.close().then(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
