import { createHmac } from "node:crypto";
import type { FakeSlack } from "../fakes/fake-slack.js";
import type { FakeTelegram } from "../fakes/fake-telegram.js";

/**
 * Slack and Telegram as they reach the server's webhooks: signed interaction payloads and updates
 * carrying the webhook secret, and the presses of a card's buttons.
 */

/** The settings of a server that talks to a fake Slack and a fake Telegram in webhook mode. */
export function chatEnv(
  slack: FakeSlack | undefined,
  telegram: FakeTelegram | undefined,
  secrets: { slack?: string; telegram?: string },
): Record<string, string> {
  return {
    ...(slack
      ? {
          SLACK_BOT_TOKEN: slack.botToken,
          SLACK_SIGNING_SECRET: secrets.slack ?? "",
          SLACK_API_URL: slack.url,
        }
      : {}),
    ...(telegram
      ? {
          TELEGRAM_BOT_TOKEN: telegram.token,
          TELEGRAM_WEBHOOK_SECRET: secrets.telegram ?? "",
          TELEGRAM_API_ROOT: telegram.url,
        }
      : {}),
  };
}

/** Slack's signature headers for `body` (v0, HMAC-SHA256 over `v0:<ts>:<body>`). */
export function slackSigned(
  body: string,
  secret: string,
  ts = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const sig = `v0=${createHmac("sha256", secret).update(`v0:${ts}:${body}`).digest("hex")}`;
  return { "x-slack-request-timestamp": String(ts), "x-slack-signature": sig };
}

/** Posts a raw body to /slack/events, signed with `secret`. */
export async function postSlackRaw(
  url: string,
  body: string,
  secret: string,
  type = "application/x-www-form-urlencoded",
  headers?: Record<string, string>,
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/slack/events`, {
    method: "POST",
    headers: { "content-type": type, ...(headers ?? slackSigned(body, secret)) },
    body,
  });
  return { status: res.status, text: await res.text() };
}

/** Posts an interaction payload to /slack/events as Slack does (form-encoded), signed unless `headers` are given. */
export function postSlack(
  url: string,
  payload: unknown,
  secret: string,
  headers?: Record<string, string>,
): Promise<{ status: number; text: string }> {
  return postSlackRaw(
    url,
    `payload=${encodeURIComponent(JSON.stringify(payload))}`,
    secret,
    undefined,
    headers,
  );
}

/** A button pressed by Slack user `userId` on a card (the card's message when it is known). */
export function slackButton(
  userId: string,
  action: { actionId: string; value: string | undefined },
  card: { ts: string; channel: string; text?: string; blocks?: unknown[] } = { ts: "1.1", channel: "C0ANY" },
  responseUrl?: string,
): Record<string, unknown> {
  return {
    type: "block_actions",
    team: { id: "T0FAKE", domain: "fake" },
    user: { id: userId, username: userId, name: userId, team_id: "T0FAKE" },
    api_app_id: "A0FAKE",
    token: "legacy",
    container: { type: "message", message_ts: card.ts, channel_id: card.channel, is_ephemeral: false },
    trigger_id: `trigger-${userId}`,
    channel: { id: card.channel, name: "directmessage" },
    message: { ts: card.ts, text: card.text ?? "card", blocks: card.blocks ?? [] },
    ...(responseUrl ? { response_url: responseUrl } : {}),
    actions: [
      {
        type: "button",
        action_id: action.actionId,
        block_id: "butler_actions",
        value: action.value,
        action_ts: "1700000000.1",
      },
    ],
  };
}

let updateId = 1;

/** Posts an update to /telegram/webhook with the webhook secret (none when `secret` is empty). */
export async function postTelegram(
  url: string,
  update: Record<string, unknown>,
  secret: string | undefined,
): Promise<number> {
  const res = await fetch(`${url}/telegram/webhook`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(secret ? { "x-telegram-bot-api-secret-token": secret } : {}),
    },
    body: JSON.stringify({ update_id: updateId++, ...update }),
  });
  await res.text();
  return res.status;
}

/** A card's button (`callback_data`) pressed by Telegram user `fromId`. */
export function telegramButton(data: string, fromId: number, messageId = 1): Record<string, unknown> {
  return {
    callback_query: {
      id: `cbq-${updateId}-${fromId}`,
      from: { id: fromId, is_bot: false, first_name: "User", username: `user${fromId}` },
      chat_instance: "ci",
      data,
      message: { message_id: messageId, date: 0, chat: { id: fromId, type: "private" }, text: "card" },
    },
  };
}

/** A private message from Telegram user `fromId` (a command such as `/start <code>` marked as one). */
export function telegramMessage(fromId: number, text: string): Record<string, unknown> {
  const command = /^\/\w+/.exec(text)?.[0];
  return {
    message: {
      message_id: updateId,
      date: 0,
      chat: { id: fromId, type: "private" },
      from: { id: fromId, is_bot: false, first_name: "User" },
      text,
      ...(command ? { entities: [{ type: "bot_command", offset: 0, length: command.length }] } : {}),
    },
  };
}
