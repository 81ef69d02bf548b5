import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { type Api, Bot, GrammyError, HttpError, webhookCallback } from "grammy";
import type { ApprovalCard } from "../../butler/approval-card.js";
import { AppError, RETRY_AFTER_SECONDS } from "../../errors.js";
import type { SecurityAlert } from "../../gateway/alerts.js";
import type { RouteDoc } from "../../http/route-doc.js";
import type { Logger } from "../../logger.js";
import { RetryLater } from "../../outbox/retry-later.js";
import {
  type ApprovalChannel,
  type Audience,
  type ChannelHooks,
  ChannelStartError,
  type PostedCard,
  type PostResult,
  type ReviewHandler,
} from "../channel.js";
import {
  ALERT_CALLBACK,
  ALERT_VERBS,
  alertKeyboard,
  CALLBACK,
  DENY_PROMPT,
  denyPrompt,
  type InlineButton,
  telegramAlert,
  telegramCard,
} from "./telegram-format.js";

export interface TelegramOptions {
  botToken: string;
  /** The Bot API root, without a trailing slash (Telegram's own by default). */
  apiRoot: string;
  /** Receive updates on `/telegram/webhook` (with this secret) or by long polling. */
  mode: "webhook" | "polling";
  webhookSecret: string | undefined;
}

/**
 * Approval cards in Telegram, through grammY: a message with inline buttons per card; presses are
 * handed to the Butler, which decides. Deny asks for a reason with a forced reply. `/start <code>`
 * redeems a one-time link that binds the sender's account to an approver.
 */
export class TelegramChannel implements ApprovalChannel {
  readonly kind = "telegram" as const;
  readonly bot: Bot;
  #polling = false;

  constructor(
    private readonly opts: TelegramOptions,
    private readonly hooks: ChannelHooks,
    private readonly log: Logger,
  ) {
    this.bot = new Bot(opts.botToken, { client: { apiRoot: opts.apiRoot } });
  }

  #onReview: ReviewHandler | undefined;
  #registered = false;

  async start(onReview: ReviewHandler): Promise<void> {
    this.#onReview = onReview;
    if (!this.#registered) {
      this.#register();
      this.#registered = true;
    }
    if (!this.bot.isInited()) {
      // getMe once, without grammY's own endless retries: the supervisor retries, and says so.
      try {
        // Bounded: a silent network would otherwise hold this attempt (and its retries) for minutes.
        this.bot.botInfo = await this.bot.api.getMe(
          AbortSignal.timeout(10_000) as Parameters<Api["getMe"]>[0],
        );
      } catch (e) {
        const auth = e instanceof GrammyError && (e.error_code === 401 || e.error_code === 404);
        throw new ChannelStartError(`telegram: ${describe(e)}`, auth, { cause: e });
      }
    }
    if (this.opts.mode === "polling" && !this.#polling) {
      this.#polling = true;
      void this.bot
        .start({ drop_pending_updates: false })
        .catch((e) => this.log.error({ err: e }, "telegram polling stopped"))
        .finally(() => {
          this.#polling = false;
        });
    }
  }

  /** The handlers, registered once (start may be called again after a failed attempt). */
  #register(): void {
    const bot = this.bot;
    const review: ReviewHandler = (input) => this.#onReview!(input);
    bot.command("start", async (ctx) => {
      const code = ctx.match.trim();
      if (!code) {
        await ctx.reply(
          "This bot shows access requests to their approvers. Ask an operator for a link to connect your account.",
        );
        return;
      }
      if (!ctx.from) return this.#ignore(ctx.update, "/start without a sender");
      try {
        const approver = await this.hooks.redeemLink(code, "telegram", String(ctx.from.id));
        await ctx.reply(`This Telegram account is now connected to approver ${approver}.`);
      } catch (e) {
        // Only refusals written for people are passed on; anything else (a database error names
        // its statement and parameters) goes to the log.
        if (e instanceof AppError && e.code !== "INTERNAL" && e.code !== "UNAVAILABLE")
          await ctx.reply(e.message);
        else {
          this.log.error({ err: e }, "linking a Telegram account failed");
          await ctx.reply("This account could not be linked just now; try the link again in a minute.");
        }
      }
    });
    bot.callbackQuery(CALLBACK, async (ctx) => {
      const [, verb, requestId] = ctx.match as RegExpMatchArray;
      if (!ctx.from) return this.#ignore(ctx.update, "button press without a sender");
      if (verb === "dn") {
        await ctx.answerCallbackQuery({ text: "Reply with a reason to deny" });
        await ctx.reply(denyPrompt(requestId!), { reply_markup: { force_reply: true, selective: true } });
        return;
      }
      const outcome = await review({
        requestId: requestId!,
        verdict: verb === "rm" ? "remember" : "approve",
        ...(verb === "a1" ? { ttlSeconds: 3600 } : {}),
        actor: { channel: "telegram", userId: String(ctx.from.id), displayName: ctx.from.username },
      });
      // Shown to the presser only; the card itself is updated for everyone through the outbox.
      await ctx.answerCallbackQuery({ text: outcome.message.slice(0, 200), show_alert: !outcome.ok });
    });
    bot.callbackQuery(ALERT_CALLBACK, async (ctx) => {
      const [, verb, alertId] = ctx.match as RegExpMatchArray;
      if (!ctx.from) return this.#ignore(ctx.update, "button press without a sender");
      const outcome = await this.hooks.alertAction({
        alertId: alertId!,
        action: ALERT_VERBS[verb as keyof typeof ALERT_VERBS],
        actor: { channel: "telegram", userId: String(ctx.from.id), displayName: ctx.from.username },
      });
      await ctx.answerCallbackQuery({ text: outcome.message.slice(0, 200), show_alert: !outcome.ok });
      // What was done is said under the alert, for everyone in the chat.
      const message = ctx.callbackQuery.message;
      if (outcome.ok && message)
        await ctx.api
          .sendMessage(message.chat.id, `${outcome.by} ${outcome.message}`.slice(0, 4000), {
            reply_parameters: { message_id: message.message_id, allow_sending_without_reply: true },
          })
          .catch((e) => this.log.warn({ err: e }, "telegram alert reply failed"));
    });
    // Any other button: not Butler's (or tampered with). Answered, so that it stops spinning.
    bot.on("callback_query", async (ctx) => {
      await this.#ignore(ctx.update, "button data not recognised");
      await ctx
        .answerCallbackQuery({
          text: "This button is not recognised; nothing was changed.",
          show_alert: true,
        })
        .catch((e) => this.log.warn({ err: e }, "telegram callback answer failed"));
    });
    bot.on("message:text", async (ctx) => {
      const prompt = ctx.message.reply_to_message?.text;
      const m =
        prompt && ctx.message.reply_to_message?.from?.id === bot.botInfo.id ? DENY_PROMPT.exec(prompt) : null;
      if (!m) return;
      if (!ctx.from) return this.#ignore(ctx.update, "reply without a sender");
      const text = ctx.message.text.trim();
      const outcome = await review({
        requestId: m[1]!,
        verdict: "deny",
        ...(text && text !== "/skip" ? { reason: text.slice(0, 1000) } : {}),
        actor: { channel: "telegram", userId: String(ctx.from.id), displayName: ctx.from.username },
      });
      await ctx.reply(outcome.message, { reply_parameters: { message_id: ctx.message.message_id } });
    });
    bot.catch((err) =>
      this.log.error({ err: err.error, updateId: err.ctx.update.update_id }, "telegram update failed"),
    );
  }

  /** An authentic update Butler does not act on: audited and logged. */
  async #ignore(update: { update_id: number }, reason: string): Promise<void> {
    this.log.warn({ updateId: update.update_id, reason }, "telegram update ignored");
    await this.hooks
      .ignored("telegram", reason, { update_id: update.update_id })
      .catch((e) => this.log.error({ err: e }, "could not audit an ignored Telegram update"));
  }

  async stop(): Promise<void> {
    if (this.#polling) await this.bot.stop();
  }

  /**
   * Mounts `/telegram/webhook`: a request without the right secret is refused (401) and audited; a
   * body that is not an update is refused (400); an update is acknowledged with 200 even when
   * handling it failed (Telegram would only send it again), except while the bot is not connected
   * yet (503, Telegram retries).
   */
  async mount(app: FastifyInstance): Promise<void> {
    if (this.opts.mode !== "webhook" || !this.opts.webhookSecret) return;
    const secret = Buffer.from(this.opts.webhookSecret);
    const handle = webhookCallback(this.bot, "fastify", { secretToken: this.opts.webhookSecret });
    const doc: RouteDoc = {
      tag: "chat",
      summary: "Telegram's updates (webhook mode): button presses on approval cards, /start links",
      auth: ["telegram"],
      rawBody: {
        types: ["application/json"],
        description: "A Telegram update (a JSON object with a numeric update_id)",
      },
    };
    app.post("/telegram/webhook", { config: { doc } }, async (req, reply) => {
      const given = Buffer.from(String(req.headers["x-telegram-bot-api-secret-token"] ?? ""));
      if (given.length !== secret.length || !timingSafeEqual(given, secret)) {
        await this.hooks.rejected(
          "telegram",
          given.length ? "wrong webhook secret" : "missing webhook secret",
          { ip: req.ip },
        );
        return reply.code(401).send({
          error: { code: "UNAUTHENTICATED", message: "wrong or missing X-Telegram-Bot-Api-Secret-Token" },
        });
      }
      const update = req.body as { update_id?: unknown } | null;
      if (
        update === null ||
        typeof update !== "object" ||
        Array.isArray(update) ||
        !Number.isSafeInteger(update.update_id)
      ) {
        return reply.code(400).send({
          error: {
            code: "INVALID_INPUT",
            message: "the body is not a Telegram update (a JSON object with a numeric update_id)",
          },
        });
      }
      if (!this.bot.isInited())
        return reply
          .code(503)
          .header("retry-after", String(RETRY_AFTER_SECONDS))
          .send({
            error: { code: "UNAVAILABLE", message: "Telegram approvals are not connected yet; try again" },
          });
      try {
        return await handle(req, reply);
      } catch (e) {
        this.log.error({ err: e, updateId: update.update_id }, "telegram update failed");
        await this.#ignore(update as { update_id: number }, "the update could not be handled");
        return reply.code(200).send();
      }
    });
  }

  /** Sends the card to each target that has none yet; a 429 or an outage is reported per target. */
  async post(card: ApprovalCard, audience: Audience, already: readonly string[] = []): Promise<PostResult> {
    const targets = audience.routes ?? [...new Set(audience.approvers.flatMap((a) => a.userIds))];
    const { text, keyboard } = telegramCard(card);
    return this.#sendAll(targets, already, text, keyboard);
  }

  /** Sends an HTML message (with its buttons) to each target not in `already`; what was posted, what failed. */
  async #sendAll(
    targets: readonly string[],
    already: readonly string[],
    text: string,
    keyboard: InlineButton[][] | undefined,
  ): Promise<PostResult> {
    const result: PostResult = { posted: [], failed: [] };
    for (const chat of targets) {
      if (already.includes(chat)) continue;
      try {
        const m = await this.bot.api.sendMessage(chat, text, {
          parse_mode: "HTML",
          link_preview_options: { is_disabled: true },
          ...(keyboard ? { reply_markup: { inline_keyboard: keyboard } } : {}),
        });
        result.posted.push({ channel: "telegram", chatId: chat, messageId: String(m.message_id) });
      } catch (e) {
        result.failed.push({ target: chat, error: describe(e), retryAfterMs: retryAfterMs(e) });
      }
    }
    return result;
  }

  async postAlert(alert: SecurityAlert, target: string): Promise<PostResult> {
    return this.#sendAll([target], [], telegramAlert(alert), alertKeyboard(alert.id));
  }

  async update(posted: PostedCard, card: ApprovalCard, note?: string): Promise<void> {
    const { text, keyboard } = telegramCard(card);
    try {
      await this.bot.api.editMessageText(posted.chatId, Number(posted.messageId), text, {
        parse_mode: "HTML",
        link_preview_options: { is_disabled: true },
        reply_markup: { inline_keyboard: keyboard ?? [] },
      });
      if (note) {
        await this.bot.api.sendMessage(posted.chatId, note.slice(0, 4000), {
          reply_parameters: { message_id: Number(posted.messageId), allow_sending_without_reply: true },
        });
      }
    } catch (e) {
      // Editing to the same text is not an error worth retrying.
      if (e instanceof GrammyError && /message is not modified/.test(e.description)) return;
      throw asRetryable(e);
    }
  }
}

function retryAfterMs(e: unknown): number | undefined {
  if (e instanceof GrammyError && e.error_code === 429) return (e.parameters.retry_after ?? 1) * 1000;
  return undefined;
}

function describe(e: unknown): string {
  if (e instanceof GrammyError) return `${e.error_code} ${e.description}`;
  if (e instanceof HttpError) return `network: ${(e.error as Error)?.message ?? e.message}`;
  return (e as Error).message ?? String(e);
}

function asRetryable(e: unknown): Error {
  const after = retryAfterMs(e);
  return after !== undefined ? new RetryLater(describe(e), after) : new Error(describe(e));
}
