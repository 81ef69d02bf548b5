import { Api } from "grammy";
import { AppError } from "../../errors.js";
import type { TelegramOptions } from "./telegram-channel.js";

/** What operators do with the Telegram bot itself (outside approvals): link accounts, set the webhook. */
export interface TelegramAdmin {
  /** The bot's username, for `t.me/<username>?start=…` links. */
  username(): Promise<string>;
  /** Registers `<publicUrl>/telegram/webhook` and its secret with Telegram; returns the URL. */
  setWebhook(): Promise<string>;
}

/** The admin side of the Telegram Bot API, or undefined when Telegram is not configured. */
export function createTelegramAdmin(
  tg: Omit<TelegramOptions, "mode"> | undefined,
  publicUrl: () => string,
): TelegramAdmin | undefined {
  if (!tg) return undefined;
  const api = new Api(tg.botToken, { apiRoot: tg.apiRoot });
  return {
    username: async () => (await api.getMe()).username,
    async setWebhook() {
      if (!tg.webhookSecret)
        throw new AppError("NOT_CONFIGURED", "set TELEGRAM_WEBHOOK_SECRET to use a webhook");
      const url = `${publicUrl()}/telegram/webhook`;
      await api.setWebhook(url, {
        secret_token: tg.webhookSecret,
        allowed_updates: ["message", "callback_query"],
      });
      return url;
    },
  };
}
