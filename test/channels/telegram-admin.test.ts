import { expect, test } from "vitest";
import { createTelegramAdmin } from "../../src/channels/telegram/telegram-admin.js";

test("without Telegram there is no Telegram admin; without a webhook secret no webhook is registered", async () => {
  expect(createTelegramAdmin(undefined, () => "https://butler.example")).toBeUndefined();
  const tg = createTelegramAdmin(
    { botToken: "123:abc", webhookSecret: undefined, apiRoot: "http://127.0.0.1:9" },
    () => "https://butler.example",
  );
  await expect(tg?.setWebhook()).rejects.toMatchObject({
    code: "NOT_CONFIGURED",
    message: "set TELEGRAM_WEBHOOK_SECRET to use a webhook",
  });
});
