import { describe, expect, test } from "vitest";
import { slackAlert } from "../../src/channels/slack/slack-format.js";
import { telegramAlert } from "../../src/channels/telegram/telegram-format.js";
import type { SecurityAlert } from "../../src/gateway/alerts.js";

const alert = (over: Partial<SecurityAlert> = {}): SecurityAlert => ({
  id: "al_0000000000abcdef",
  kind: "pact_violation",
  project: "procurement",
  agent: "procurement-agent",
  title: "procurement-agent: revolut TransactionCreated <b>txn</b> breaks its pact",
  facts: ["procurement-agent used merchant category <7995> @here <!channel>", "trust score now 700"],
  eventIds: ["ev_1"],
  at: "2026-11-04T09:00:00.000Z",
  url: "http://127.0.0.1:8080/dashboard/agents/procurement/procurement-agent",
  ...over,
});

/** Alerts carry provider and agent text: shown as text on every platform, never as markup. */
describe("security alerts as chat messages", () => {
  test("Slack: the title and facts are plain text; only Butler's own link is a link", () => {
    const { blocks, text } = slackAlert(alert());
    const kinds = blocks.map((b) => (b.text as { type?: string } | undefined)?.type ?? b.type);
    expect(kinds).toEqual(["plain_text", "plain_text", "plain_text", "context", "actions"]);
    // The buttons carry the alert id only.
    expect(JSON.stringify(blocks[4])).toContain('"value":"al_0000000000abcdef"');
    expect(JSON.stringify(blocks[2])).toContain("<!channel>");
    const context = JSON.stringify(blocks[3]);
    expect(context).toContain(
      "<http://127.0.0.1:8080/dashboard/agents/procurement/procurement-agent|agent page>",
    );
    expect(text.length).toBeLessThanOrEqual(4000);
    // The notification's fallback text is mrkdwn: escaped, so no mention or link forms.
    const loud = slackAlert(alert({ title: "card <!here> at <http://evil.example|bank>" })).text;
    expect(loud).toContain("&lt;!here&gt;");
    expect(loud).not.toContain("<!here>");
    expect(loud).not.toContain("<http://evil");
  });

  test("Telegram: every fact and the title are HTML-escaped and the message fits 4096 characters", () => {
    const text = telegramAlert(alert());
    expect(text).toContain("&lt;b&gt;txn&lt;/b&gt;");
    expect(text).toContain("merchant category &lt;7995&gt;");
    expect(text).not.toContain("<b>txn");
    // Also inside the link's attribute: a quote cannot end it.
    expect(telegramAlert(alert({ url: 'http://x/"><b>y' }))).toContain(
      'href="http://x/&quot;&gt;&lt;b&gt;y"',
    );
    const long = telegramAlert(alert({ facts: Array.from({ length: 400 }, (_, i) => `fact ${i} <&>`) }));
    expect(long.length).toBeLessThanOrEqual(4096);
    expect(long).toMatch(
      /…\n<a href="http:\/\/127\.0\.0\.1:8080\/dashboard\/agents\/procurement\/procurement-agent">agent page<\/a>/,
    );
  });
});

describe("the security webhook's answers", () => {
  test("a 4xx is final and reported; a 5xx is retried; a 2xx is sent", async () => {
    const { createServer } = await import("node:http");
    const { alertHandler } = await import("../../src/channels/alert-delivery.js");
    let status = 401;
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(status).end());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
    const send = alertHandler({ channels: [], credential: async () => undefined, now: () => new Date() })[
      "security.alert"
    ];
    try {
      const refused = await send({ channel: "webhook", url, secret: undefined, alert: alert() });
      expect(refused).toMatchObject({
        auditType: "security.alert_refused",
        reason: "the security webhook answered 401",
      });
      status = 503;
      await expect(send({ channel: "webhook", url, secret: undefined, alert: alert() })).rejects.toThrow(
        "the security webhook answered 503",
      );
      status = 204;
      expect(await send({ channel: "webhook", url, secret: undefined, alert: alert() })).toMatchObject({
        auditType: "security.alert_sent",
      });
      // A named secret that is not set: never sent unsigned.
      const unsigned = alertHandler({
        channels: [],
        credential: async () => undefined,
        now: () => new Date(),
      });
      await expect(
        unsigned["security.alert"]({ channel: "webhook", url, secret: "ALERT_KEY", alert: alert() }),
      ).rejects.toThrow("set ALERT_KEY on the server");
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
