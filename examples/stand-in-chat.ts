/**
 * `npm run stand-in:chat`: a fake Slack Web API and a fake Telegram Bot API on this machine (the
 * tests' fakes, test/fakes/), for trying Butler's approval cards without a workspace or a bot.
 * Prints the settings that point Butler at them, then one line per API call Butler makes (cards
 * posted and updated). Nobody can press a button here: approve in the dashboard or the API, and
 * watch the cards being updated. Ctrl-C stops it.
 */
import { FakeSlack } from "../test/fakes/fake-slack.js";
import { FakeTelegram } from "../test/fakes/fake-telegram.js";

const slack = await new FakeSlack().start();
const telegram = await new FakeTelegram().start();

/** Prints the calls a fake received since the last change. */
function follow(name: string, fake: { calls: { method: string }[]; onChange(l: () => void): () => void }) {
  let seen = 0;
  fake.onChange(() => {
    // Long polling asks every 50 ms: only what changes a chat is shown.
    for (const c of fake.calls.slice(seen))
      if (c.method !== "getUpdates") process.stdout.write(`${name}: ${c.method}\n`);
    seen = fake.calls.length;
  });
}
follow("slack", slack);
follow("telegram", telegram);

process.stdout.write(
  [
    `Fake Slack Web API at ${slack.url}, fake Telegram Bot API at ${telegram.url}`,
    "Point Butler at them, in another terminal:",
    `  SLACK_API_URL=${slack.url} SLACK_BOT_TOKEN=${slack.botToken} SLACK_SIGNING_SECRET=stand-in-signing-secret \\`,
    `  TELEGRAM_API_ROOT=${telegram.url} TELEGRAM_BOT_TOKEN=${telegram.token} TELEGRAM_MODE=polling npm start`,
    "",
  ].join("\n"),
);
const stop = () => void Promise.all([slack.stop(), telegram.stop()]).then(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
