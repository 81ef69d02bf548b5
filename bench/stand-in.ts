/**
 * Benchmark child process: the stand-in Stripe on its own (as a real provider is: another
 * machine's CPU, not Butler's). Prints one JSON line with its address; SIGTERM stops it.
 */
import { startStandInStripe } from "../examples/stand-in-stripe.js";

const key = process.argv[2];
if (!key) throw new Error("usage: stand-in.ts <key>");
const stripe = await startStandInStripe(key);
process.stdout.write(`${JSON.stringify({ url: stripe.url })}\n`);
// Nothing it saw is kept: a long run must not grow the process.
setInterval(() => stripe.requests.splice(0), 1000).unref();
process.on("SIGTERM", async () => {
  await stripe.close();
  process.exit(0);
});
