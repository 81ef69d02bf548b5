import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Observed } from "./observed.js";
import { telegramHtmlError } from "./telegram-contract.js";

export interface TelegramCall {
  method: string;
  body: Record<string, any>;
}

export interface TelegramMessage {
  chatId: string;
  messageId: number;
  text: string;
  keyboard: { text: string; callback_data: string }[][] | undefined;
  replyTo: number | undefined;
}

/**
 * A local Telegram Bot API that behaves like Telegram where the product depends on it: the token in
 * the path (401 otherwise), `{ok:false, error_code, description}` errors, 4096-character messages,
 * 64-byte callback data, HTML that must parse, "message is not modified", 429 with `retry_after`
 * when told to, and an outage switch that answers 502 for everything.
 */
export class FakeTelegram extends Observed {
  readonly calls: TelegramCall[] = [];
  readonly messages = new Map<string, TelegramMessage>();
  readonly updates: Record<string, any>[] = [];
  readonly script = new Map<string, { error_code: number; description: string; retry_after?: number }[]>();
  down = false;
  webhook: { url: string; secret_token?: string } | undefined;
  #server: Server | undefined;
  #id = 100;
  #updateId = 1;
  url = "";

  constructor(
    readonly token = "123456:TEST-token_abc",
    readonly botUsername = "butler_test_bot",
  ) {
    super();
  }

  async start(): Promise<this> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((r) => this.#server!.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((r) => this.#server?.close(() => r()) ?? r());
  }

  calledWith(method: string): TelegramCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** The card sent to a chat for a request. */
  cardFor(requestId: string, chatId?: string): TelegramMessage | undefined {
    return [...this.messages.values()].find(
      (m) =>
        m.text.includes(requestId) &&
        (chatId === undefined || m.chatId === chatId) &&
        m.replyTo === undefined,
    );
  }

  /** Queues an update for long polling (getUpdates). */
  queueUpdate(update: Record<string, any>): void {
    this.updates.push({ update_id: this.#updateId++, ...update });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
      this.changed();
    };
    if (this.down) return send(502, { ok: false, error_code: 502, description: "Bad Gateway" });
    const m = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(req.url ?? "");
    if (!m) return send(404, { ok: false, error_code: 404, description: "Not Found" });
    const [, token, method] = m as unknown as [string, string, string];
    const body = raw ? JSON.parse(raw) : {};
    this.calls.push({ method, body });
    if (token !== this.token) return send(401, { ok: false, error_code: 401, description: "Unauthorized" });
    const fail = (error_code: number, description: string, extra: Record<string, unknown> = {}) =>
      send(error_code, { ok: false, error_code, description, ...extra });
    const scripted = this.script.get(method)?.shift();
    if (scripted) {
      return fail(
        scripted.error_code,
        scripted.description,
        scripted.retry_after ? { parameters: { retry_after: scripted.retry_after } } : {},
      );
    }
    switch (method) {
      case "getMe":
        return send(200, {
          ok: true,
          result: {
            id: 999,
            is_bot: true,
            first_name: "Butler",
            username: this.botUsername,
            can_join_groups: true,
            can_read_all_group_messages: false,
            supports_inline_queries: false,
            can_connect_to_business: false,
            has_main_web_app: false,
          },
        });
      case "setWebhook":
        this.webhook = { url: body.url, secret_token: body.secret_token };
        return send(200, { ok: true, result: true });
      case "deleteWebhook":
        this.webhook = undefined;
        return send(200, { ok: true, result: true });
      case "getUpdates": {
        const offset = Number(body.offset ?? 0);
        const pending = this.updates.filter((u) => u.update_id >= offset);
        if (pending.length === 0) await new Promise((r) => setTimeout(r, 50));
        return send(200, { ok: true, result: pending });
      }
      case "sendMessage": {
        const problem = this.#checkText(body);
        if (problem) return fail(400, problem);
        const id = ++this.#id;
        const chatId = String(body.chat_id);
        this.messages.set(`${chatId}:${id}`, {
          chatId,
          messageId: id,
          text: String(body.text),
          keyboard: body.reply_markup?.inline_keyboard,
          replyTo: body.reply_parameters?.message_id,
        });
        return send(200, {
          ok: true,
          result: { message_id: id, date: 0, chat: { id: Number(chatId), type: "private" }, text: body.text },
        });
      }
      case "editMessageText": {
        const key = `${body.chat_id}:${body.message_id}`;
        const msg = this.messages.get(key);
        if (!msg) return fail(400, "Bad Request: message to edit not found");
        const problem = this.#checkText(body);
        if (problem) return fail(400, problem);
        const keyboard = body.reply_markup?.inline_keyboard?.length
          ? body.reply_markup.inline_keyboard
          : undefined;
        if (msg.text === body.text && JSON.stringify(msg.keyboard) === JSON.stringify(keyboard)) {
          return fail(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same",
          );
        }
        msg.text = String(body.text);
        msg.keyboard = keyboard;
        return send(200, {
          ok: true,
          result: { message_id: msg.messageId, date: 0, chat: { id: Number(msg.chatId), type: "private" } },
        });
      }
      case "answerCallbackQuery":
        if (String(body.text ?? "").length > 200) return fail(400, "Bad Request: text is too long");
        return send(200, { ok: true, result: true });
      default:
        return fail(404, "Not Found: method not found");
    }
  }

  #checkText(body: Record<string, any>): string | undefined {
    const text = String(body.text ?? "");
    if (!text) return "Bad Request: message text is empty";
    if (body.parse_mode === "HTML") {
      const e = telegramHtmlError(text);
      if (e) return e;
    } else if (text.length > 4096) return "Bad Request: message is too long";
    for (const row of body.reply_markup?.inline_keyboard ?? []) {
      for (const b of row)
        if (Buffer.byteLength(String(b.callback_data ?? "")) > 64) return "Bad Request: BUTTON_DATA_INVALID";
    }
    return undefined;
  }
}
