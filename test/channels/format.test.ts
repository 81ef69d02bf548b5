import { describe, expect, test } from "vitest";
import type { ApprovalCard } from "../../src/butler/approval-card.js";
import { SLACK_LIMITS, slackCard } from "../../src/channels/slack/slack-format.js";
import { CALLBACK, TELEGRAM_LIMITS, telegramCard } from "../../src/channels/telegram/telegram-format.js";
import { slackMessageError } from "../fakes/slack-contract.js";
import { telegramHtmlError, telegramVisibleText } from "../fakes/telegram-contract.js";

const HOSTILE =
  '<@U0ADMIN> <!here> <!channel> <https://evil.example|click to approve> *bold* `code` ```block``` @everyone https://evil.example <a href="https://evil.example">x</a> </code></pre><b>Approved</b> &amp; &lt; ‮reversed';

function card(over: Partial<ApprovalCard> = {}): ApprovalCard {
  return {
    requestId: "req_0123456789abcdef",
    project: "project-billing",
    agent: "billing-reconciler-1",
    action: "stripe:charges:read",
    resource: "stripe.com/v1/charges",
    branch: undefined,
    resourcePattern: undefined,
    blastRadius: [],
    pastDenials: [],
    status: "pending",
    reason: "need read-only Stripe charges",
    riskTier: "low",
    approvalsRequired: 1,
    approvedBy: [],
    requestedTtlSeconds: 86400,
    maxTtlSeconds: 604800,
    oneShot: false,
    diff: "--- a\n+++ b\n@@ -1 +1,2 @@\n+  - id: req_0123456789abcdef\n",
    requestExpiresAt: "2026-05-02T10:00:00.000Z",
    decidedBy: undefined,
    decidedVia: undefined,
    decisionReason: undefined,
    grantExpiresAt: undefined,
    grantState: undefined,
    grantRevokedBy: undefined,
    grantRevokedAt: undefined,
    rememberedBy: [],
    rememberedTo: undefined,
    breakGlassBy: undefined,
    url: "https://butler.example/dashboard/requests/req_0123456789abcdef",
    ...over,
  };
}

const bigDiff =
  `--- a\n+++ b\n${Array.from({ length: 2000 }, (_, i) => `+ line ${i} <tag> & "quotes" ${"x".repeat(8)}`).join("\n")}`.slice(
    0,
    40_000,
  );

describe("the Slack card", () => {
  test("has every fact, the three buttons, and passes Slack's limits", () => {
    const m = slackCard(card());
    expect(slackMessageError({ text: m.text, blocks: m.blocks })).toBeUndefined();
    const json = JSON.stringify(m.blocks);
    for (const fact of [
      "project-billing",
      "billing-reconciler-1",
      "stripe.com/v1/charges",
      "PT24H (max P7D)",
      "low",
      "0 of 1 approval",
      "Reason (written by the agent)",
    ]) {
      expect(json).toContain(fact);
    }
    const actions = m.blocks.find((b) => b.type === "actions") as {
      elements: { action_id: string; value: string }[];
    };
    expect(actions.elements.map((e) => [e.action_id, e.value])).toEqual([
      ["butler_approve", "req_0123456789abcdef"],
      ["butler_approve_short", "req_0123456789abcdef|3600"],
      ["butler_deny", "req_0123456789abcdef"],
    ]);
  });

  test("a 40,000-character diff and a hostile reason stay within limits and cannot form links or mentions", () => {
    const m = slackCard(
      card({ diff: bigDiff, reason: HOSTILE.repeat(30), resource: HOSTILE, branch: HOSTILE }),
    );
    expect(slackMessageError({ text: m.text, blocks: m.blocks })).toBeUndefined();
    expect(m.blocks.length).toBeLessThanOrEqual(SLACK_LIMITS.blocks);
    for (const b of m.blocks) {
      const texts = [(b as any).text, ...((b as any).fields ?? []), ...((b as any).elements ?? [])].filter(
        Boolean,
      );
      for (const t of texts) {
        if (t.type !== "mrkdwn") continue;
        // The only link in mrkdwn is ours; everything else has < and > escaped.
        const angle = (t.text as string).replace(`<${card().url}|Full proposal>`, "");
        expect(angle).not.toMatch(/[<>]/);
      }
    }
    const reasonBlock = m.blocks.find((b) =>
      JSON.stringify(b).includes("Reason (written by the agent)"),
    ) as any;
    expect(reasonBlock.text.type).toBe("plain_text");
    expect(JSON.stringify(m.blocks)).toContain("cut: see the full proposal");
  });

  test("a decided card has no Approve or Deny and says who decided, where, and until when", () => {
    const m = slackCard(
      card({
        status: "approved",
        decidedBy: "jordan",
        decidedVia: "telegram",
        approvedBy: ["jordan"],
        grantExpiresAt: "2026-05-02T17:43:04.000Z",
      }),
    );
    // Only Remember is left on an approved grant's card.
    const buttons = m.blocks
      .filter((b) => b.type === "actions")
      .flatMap((b) => ((b as { elements?: { action_id: string }[] }).elements ?? []).map((e) => e.action_id));
    expect(buttons).toEqual(["butler_remember"]);
    expect(JSON.stringify(m.blocks)).toContain(
      "Approved by jordan via telegram; the grant expires 2026-05-02T17:43:04.000Z",
    );
  });
});

test("an approved card says when its grant expired or was revoked, on both platforms", () => {
  const approved = {
    status: "approved" as const,
    decidedBy: "jordan",
    decidedVia: "slack",
    approvedBy: ["jordan"],
    grantExpiresAt: "2026-05-02T17:43:04.000Z",
  };
  const revoked = card({
    ...approved,
    grantState: "revoked",
    grantRevokedBy: "approver:sam",
    grantRevokedAt: "2026-05-02T09:00:00.000Z",
  });
  const expired = card({ ...approved, grantState: "expired" });
  const revokedLine = "the grant was revoked by approver:sam at 2026-05-02T09:00:00.000Z";
  expect(JSON.stringify(slackCard(revoked).blocks)).toContain(revokedLine);
  expect(telegramCard(revoked).text).toContain(revokedLine);
  expect(JSON.stringify(slackCard(revoked).blocks)).not.toContain("the grant expires");
  expect(JSON.stringify(slackCard(expired).blocks)).toContain("the grant expired 2026-05-02T17:43:04.000Z");
  expect(telegramCard(expired).text).toContain("the grant expired 2026-05-02T17:43:04.000Z");
});

describe("the Telegram card", () => {
  test("has every fact and buttons whose callback data fits in 64 bytes", () => {
    const m = telegramCard(card());
    expect(telegramHtmlError(m.text)).toBeUndefined();
    const visible = telegramVisibleText(m.text);
    for (const fact of [
      "project-billing",
      "billing-reconciler-1",
      "stripe.com/v1/charges",
      "PT24H (max P7D)",
      "Risk: low",
      "0 of 1 approval",
      "Reason (written by the agent):",
    ]) {
      expect(visible).toContain(fact);
    }
    const data = m.keyboard!.flat().map((b) => b.callback_data);
    expect(data).toEqual(["ap:req_0123456789abcdef", "a1:req_0123456789abcdef", "dn:req_0123456789abcdef"]);
    for (const d of data) {
      expect(Buffer.byteLength(d)).toBeLessThanOrEqual(TELEGRAM_LIMITS.callbackData);
      expect(d).toMatch(CALLBACK);
    }
  });

  test("a 40,000-character diff and a hostile reason stay within limits and only inside code", () => {
    const m = telegramCard(
      card({ diff: bigDiff, reason: HOSTILE.repeat(30), resource: HOSTILE, branch: HOSTILE }),
    );
    expect(telegramHtmlError(m.text)).toBeUndefined();
    expect(m.text.length).toBeLessThanOrEqual(TELEGRAM_LIMITS.messageText);
    // Every tag in the message is one of ours: the agent's markup arrived as text.
    const tags = new Set([...m.text.matchAll(/<\/?([a-z-]+)/g)].map((t) => t[1]));
    expect([...tags].sort()).toEqual(["b", "code", "pre"]);
    expect(m.text).not.toContain('<a href="https://evil.example">');
    expect(telegramVisibleText(m.text)).toContain("cut: see the full proposal");
  });

  test("an approved grant's card offers Remember, unless it is a rule already, a break-glass, a one-shot or revoked", () => {
    const approved = card({ status: "approved", decidedBy: "jordan", grantState: "active" });
    expect(telegramCard(approved).keyboard).toEqual([
      [{ text: "📌 Remember as a permanent rule", callback_data: "rm:req_0123456789abcdef" }],
    ]);
    expect(JSON.stringify(slackCard(approved).blocks)).toContain('"action_id":"butler_remember"');
    for (const over of [
      { rememberedTo: "file:/p/x.yaml", rememberedBy: ["jordan"] },
      { breakGlassBy: "jordan" },
      { oneShot: true },
      { grantState: "revoked" as const },
    ]) {
      expect(telegramCard({ ...approved, ...over }).keyboard, JSON.stringify(over)).toBeUndefined();
      expect(JSON.stringify(slackCard({ ...approved, ...over }).blocks)).not.toContain("butler_remember");
    }
  });

  test("a decided card has no buttons and states the outcome", () => {
    const m = telegramCard(
      card({
        status: "denied",
        decidedBy: "jordan",
        decidedVia: "slack",
        decisionReason: "use a <feature> branch",
      }),
    );
    expect(m.keyboard).toBeUndefined();
    expect(telegramHtmlError(m.text)).toBeUndefined();
    expect(telegramVisibleText(m.text)).toContain("Denied by jordan via slack: use a <feature> branch");
  });
});

test("a one-shot card asks to approve one exact call, escapes its agent-written params, and says when it was used", () => {
  const diff = `# One call, once: not a policy change.\nagent: payer-1\nparams:\n  description: "${HOSTILE}"\n  amount: "60000"\n`;
  const pending = card({ oneShot: true, diff });
  const slack = slackCard(pending);
  expect(slackMessageError({ text: slack.text, blocks: slack.blocks })).toBeUndefined();
  const slackJson = JSON.stringify(slack.blocks);
  expect(slackJson).toContain("*Approve this exact call, once*");
  expect(slackJson).not.toContain("Proposed policy change");
  expect(slackJson).not.toContain("<https://evil.example|");
  const tg = telegramCard(pending);
  expect(telegramHtmlError(tg.text)).toBeUndefined();
  expect(tg.text).toContain("<b>Approve this exact call, once:</b>");
  expect(telegramVisibleText(tg.text)).toContain('<a href="https://evil.example">x</a>');

  const used = card({
    oneShot: true,
    diff,
    status: "approved",
    decidedBy: "jordan",
    decidedVia: "slack",
    approvedBy: ["jordan"],
    grantExpiresAt: "2026-05-02T17:43:04.000Z",
    grantState: "used",
  });
  expect(JSON.stringify(slackCard(used).blocks)).toContain(
    "Approved by jordan via slack; the approved call was made",
  );
  expect(telegramCard(used).text).toContain("the approved call was made");
  const live = card({ ...used, grantState: "active" });
  expect(telegramCard(live).text).toContain("the one-shot approval expires 2026-05-02T17:43:04.000Z");
});
