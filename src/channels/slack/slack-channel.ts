import { createHmac, timingSafeEqual } from "node:crypto";
import { parse as parseQuery } from "node:querystring";
import {
  App,
  type BlockAction,
  type ButtonAction,
  LogLevel,
  type Receiver,
  type ReceiverEvent,
  SocketModeReceiver,
} from "@slack/bolt";
import type { Logger as SlackLogger } from "@slack/logger";
import { ErrorCode, WebAPIRateLimitedError, type WebClientOptions } from "@slack/web-api";
import type { FastifyInstance } from "fastify";
import type { ApprovalCard } from "../../butler/approval-card.js";
import type { Clock } from "../../clock.js";
import { RETRY_AFTER_SECONDS } from "../../errors.js";
import { ALERT_ID } from "../../gateway/alert-actions.js";
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
  type ReviewInput,
} from "../channel.js";
import {
  ACTION_APPROVE,
  ACTION_APPROVE_SHORT,
  ACTION_DENY,
  ACTION_REMEMBER,
  ALERT_BUTTONS,
  DENY_MODAL,
  denyModal,
  escapeMrkdwn,
  slackAlert,
  slackCard,
} from "./slack-format.js";

export interface SlackOptions {
  botToken: string;
  /** Slack's Web API root, e.g. https://slack.com/api/ (GovSlack and tests use others). */
  apiUrl: string;
  /** HTTP mode: requests to /slack/events are verified with this secret. */
  signingSecret: string | undefined;
  /** Socket Mode: an app-level token (xapp-…); no public URL needed. */
  appToken: string | undefined;
}

/** How far a request's timestamp may be from now, either way (Slack's recommendation: 5 minutes). */
const MAX_SKEW_SECONDS = 300;
const VALUE = /^(req_[a-z0-9]{16})(?:\|(\d{1,7}))?$/;
const BUTTONS = new Set<string>([
  ACTION_APPROVE,
  ACTION_APPROVE_SHORT,
  ACTION_DENY,
  ACTION_REMEMBER,
  ...Object.keys(ALERT_BUTTONS),
]);
/** Slack's answers to a token it does not accept. */
const AUTH_ERRORS = new Set([
  "invalid_auth",
  "not_authed",
  "account_inactive",
  "token_revoked",
  "token_expired",
  "no_permission",
  "missing_scope",
]);

/**
 * Approval cards in Slack through Bolt: in HTTP mode behind this server's `/slack/events` (every
 * request's v0 signature verified; bad or stale ones refused with 401 and audited), or in Socket
 * Mode. Buttons are handed to the Butler, which decides; Deny opens a modal for a reason.
 */
export class SlackChannel implements ApprovalChannel {
  readonly kind = "slack" as const;
  readonly app: App;
  #receiver: FastifyReceiver | undefined;
  #onReview: ReviewHandler | undefined;
  #ready = false;
  #emails = new Map<string, { email: string | undefined; at: number }>();
  #byEmail = new Map<string, { userId: string | undefined; at: number }>();

  constructor(
    opts: SlackOptions,
    private readonly hooks: ChannelHooks,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    // Rate limits and retries are the outbox's business: every failure comes back to us at once.
    const clientOptions: WebClientOptions = {
      slackApiUrl: opts.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: 10_000,
    };
    const logger = boltLogger(log);
    if (opts.appToken) {
      const receiver = new SocketModeReceiver({
        appToken: opts.appToken,
        logger,
        installerOptions: { clientOptions },
      });
      this.app = new App({
        token: opts.botToken,
        receiver,
        socketMode: true,
        logger,
        clientOptions,
        deferInitialization: true,
      });
    } else {
      this.#receiver = new FastifyReceiver(opts.signingSecret ?? "", hooks, clock, log, {
        ready: () => this.#ready,
        ignore: (body, reason) => this.ignore(body, reason),
      });
      this.app = new App({
        token: opts.botToken,
        receiver: this.#receiver,
        logger,
        clientOptions,
        deferInitialization: true,
      });
    }
  }

  async start(onReview: ReviewHandler): Promise<void> {
    this.#onReview = onReview;
    if (!this.#registered) {
      this.#register();
      this.#registered = true;
    }
    try {
      await this.app.init();
      await this.app.start();
    } catch (e) {
      const code = (e as { data?: { error?: unknown } }).data?.error;
      const auth =
        (e as { code?: unknown }).code === ErrorCode.PlatformError &&
        typeof code === "string" &&
        AUTH_ERRORS.has(code);
      throw new ChannelStartError(`slack: ${describe(e)}`, auth, { cause: e });
    }
    this.#ready = true;
  }

  #registered = false;

  /** The listeners, registered once (start may be called again after a failed attempt). */
  #register(): void {
    const app = this.app;
    const review = (input: ReviewInput) => this.#onReview!(input);
    const approve =
      (ttlFromValue: boolean, verdict: "approve" | "remember" = "approve") =>
      async ({
        ack,
        body,
        action,
        client,
      }: {
        ack: () => Promise<void>;
        body: BlockAction;
        action: ButtonAction;
        client: App["client"];
      }) => {
        await ack();
        const m = VALUE.exec(typeof action.value === "string" ? action.value : "");
        if (!m) return this.ignore(body, `button value of ${action.action_id} not understood`);
        const outcome = await review({
          requestId: m[1]!,
          verdict,
          ...(ttlFromValue && m[2] ? { ttlSeconds: Number(m[2]) } : {}),
          actor: await this.actor(body.user.id, body.user.name),
        });
        // Only the person who pressed sees this; the card is updated for everyone by the outbox.
        await client.chat
          .postEphemeral({
            channel: body.channel?.id ?? body.user.id,
            user: body.user.id,
            text: escapeMrkdwn(outcome.message),
          })
          .catch((e) => this.log.warn({ err: e }, "slack ephemeral reply failed"));
      };
    app.action<BlockAction<ButtonAction>>(
      { type: "block_actions", action_id: ACTION_APPROVE },
      approve(false),
    );
    app.action<BlockAction<ButtonAction>>(
      { type: "block_actions", action_id: ACTION_APPROVE_SHORT },
      approve(true),
    );
    app.action<BlockAction<ButtonAction>>(
      { type: "block_actions", action_id: ACTION_REMEMBER },
      approve(false, "remember"),
    );
    app.action<BlockAction<ButtonAction>>(
      { type: "block_actions", action_id: ACTION_DENY },
      async ({ ack, body, action, client }) => {
        await ack();
        const m = VALUE.exec(typeof action.value === "string" ? action.value : "");
        if (!m) return this.ignore(body, `button value of ${action.action_id} not understood`);
        await client.views.open({ trigger_id: body.trigger_id, view: denyModal(m[1]!) as never });
      },
    );
    app.view(DENY_MODAL, async ({ ack, view, body }) => {
      const requestId = view.private_metadata;
      const values = (view.state as { values?: unknown } | undefined)?.values;
      if (typeof requestId !== "string" || !VALUE.test(requestId) || !values || typeof values !== "object") {
        await ack();
        return this.ignore(body, "deny form not understood");
      }
      const given = (values as Record<string, Record<string, { value?: unknown }> | undefined>).reason?.value
        ?.value;
      const reason = typeof given === "string" ? given.trim() : undefined;
      const outcome = await review({
        requestId,
        verdict: "deny",
        ...(reason ? { reason: reason.slice(0, 1000) } : {}),
        actor: await this.actor(body.user.id, body.user.name),
      });
      if (outcome.ok) await ack();
      else await ack({ response_action: "errors", errors: { reason: outcome.message } });
    });
    for (const [actionId, act] of Object.entries(ALERT_BUTTONS))
      app.action<BlockAction<ButtonAction>>(
        { type: "block_actions", action_id: actionId },
        async ({ ack, body, action, client }) => {
          await ack();
          const alertId = typeof action.value === "string" ? action.value : "";
          if (!ALERT_ID.test(alertId)) return this.ignore(body, `button value of ${actionId} not understood`);
          const outcome = await this.hooks.alertAction({
            alertId,
            action: act,
            actor: await this.actor(body.user.id, body.user.name),
          });
          const channel = body.channel?.id;
          await client.chat
            .postEphemeral({
              channel: channel ?? body.user.id,
              user: body.user.id,
              text: escapeMrkdwn(outcome.message),
            })
            .catch((e) => this.log.warn({ err: e }, "slack ephemeral reply failed"));
          // What was done is said in the alert's thread, for everyone in the room.
          const ts = body.container?.message_ts ?? body.message?.ts;
          if (outcome.ok && channel && ts)
            await client.chat
              .postMessage({ channel, thread_ts: ts, text: escapeMrkdwn(`${outcome.by} ${outcome.message}`) })
              .catch((e) => this.log.warn({ err: e }, "slack thread reply failed"));
        },
      );
    app.error(async (e) => {
      this.log.error({ err: e }, "slack handler failed");
    });
  }

  /**
   * An authentic interaction Butler does not act on (an unknown button, a value or form it does
   * not understand): audited, and the presser is told privately that nothing changed.
   */
  async ignore(body: unknown, reason: string): Promise<void> {
    const b = (body !== null && typeof body === "object" ? body : {}) as Record<string, unknown>;
    const field = (o: unknown, k: string) => {
      const v = o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined;
      return typeof v === "string" ? v.slice(0, 200) : undefined;
    };
    const userId = field(b.user, "id");
    const channel = field(b.channel, "id") ?? field(b.container, "channel_id");
    const actions = Array.isArray(b.actions) ? b.actions : [];
    await this.hooks
      .ignored("slack", reason, {
        interaction: field(b, "type") ?? null,
        action_id: field(actions[0], "action_id") ?? null,
        callback_id: field(b.view, "callback_id") ?? field(b, "callback_id") ?? null,
        user_id: userId ?? null,
      })
      .catch((e) => this.log.error({ err: e }, "could not audit an ignored Slack interaction"));
    this.log.warn({ reason, userId }, "slack interaction ignored");
    if (userId && channel && this.#ready)
      await this.app.client.chat
        .postEphemeral({
          channel,
          user: userId,
          text: "Butler did not recognise this action; nothing was changed.",
        })
        .catch((e) => this.log.warn({ err: e }, "slack ephemeral reply failed"));
  }

  async stop(): Promise<void> {
    this.#ready = false;
    await this.app.stop();
  }

  /** Mounts `/slack/events` (HTTP mode only). */
  async mount(server: FastifyInstance): Promise<void> {
    if (this.#receiver) await server.register(this.#receiver.plugin);
  }

  /** The presser, with the email Slack reports (for approvers named by email). */
  private async actor(userId: string, name: string | undefined): Promise<ReviewInput["actor"]> {
    const now = this.clock.now().getTime();
    let hit = this.#emails.get(userId);
    if (!hit || now - hit.at > 10 * 60_000) {
      const info = await this.app.client.users.info({ user: userId }).catch(() => undefined);
      hit = { email: info?.user?.profile?.email, at: now };
      this.#emails.set(userId, hit);
    }
    return { channel: "slack", userId, displayName: name, email: hit.email };
  }

  private async userIdForEmail(email: string): Promise<string | undefined> {
    const now = this.clock.now().getTime();
    let hit = this.#byEmail.get(email);
    if (!hit || now - hit.at > 10 * 60_000) {
      const r = await this.app.client.users.lookupByEmail({ email }).catch(() => undefined);
      hit = { userId: r?.user?.id, at: now };
      this.#byEmail.set(email, hit);
    }
    return hit.userId;
  }

  async post(card: ApprovalCard, audience: Audience, already: readonly string[] = []): Promise<PostResult> {
    const targets = audience.routes ?? [
      ...new Set([
        ...audience.approvers.flatMap((a) => a.userIds),
        ...(
          await Promise.all(audience.approvers.flatMap((a) => a.emails).map((e) => this.userIdForEmail(e)))
        ).filter((u): u is string => !!u),
      ]),
    ];
    const { text, blocks } = slackCard(card);
    const result: PostResult = { posted: [], failed: [] };
    for (const target of targets) {
      try {
        // A user id is a direct message: open it first, so that a retry can tell it was sent.
        const channel = /^[UW]/.test(target)
          ? ((await this.app.client.conversations.open({ users: target })).channel?.id ?? target)
          : target;
        if (already.includes(channel)) continue;
        result.posted.push(await this.#send(channel, text, blocks));
      } catch (e) {
        result.failed.push({ target, error: describe(e), retryAfterMs: retryAfterMs(e) });
      }
    }
    return result;
  }

  /** Posts one message (links and media never unfurled); where it was posted. */
  async #send(channel: string, text: string, blocks: unknown[]): Promise<PostedCard> {
    const r = await this.app.client.chat.postMessage({
      channel,
      text,
      blocks: blocks as never,
      unfurl_links: false,
      unfurl_media: false,
    });
    return { channel: "slack", chatId: r.channel ?? channel, messageId: String(r.ts) };
  }

  async postAlert(alert: SecurityAlert, target: string): Promise<PostResult> {
    const { text, blocks } = slackAlert(alert);
    try {
      return { posted: [await this.#send(target, text, blocks)], failed: [] };
    } catch (e) {
      return { posted: [], failed: [{ target, error: describe(e), retryAfterMs: retryAfterMs(e) }] };
    }
  }

  async update(posted: PostedCard, card: ApprovalCard, note?: string): Promise<void> {
    const { text, blocks } = slackCard(card);
    try {
      await this.app.client.chat.update({
        channel: posted.chatId,
        ts: posted.messageId,
        text,
        blocks: blocks as never,
      });
      // Each step is also a reply in the card's thread, so the history stays with the card.
      if (note)
        await this.app.client.chat.postMessage({
          channel: posted.chatId,
          thread_ts: posted.messageId,
          text: escapeMrkdwn(note),
        });
    } catch (e) {
      const after = retryAfterMs(e);
      throw after !== undefined ? new RetryLater(describe(e), after) : new Error(describe(e));
    }
  }
}

function retryAfterMs(e: unknown): number | undefined {
  return e instanceof WebAPIRateLimitedError ? Math.max(1, e.retryAfter) * 1000 : undefined;
}

function describe(e: unknown): string {
  const data = (e as { data?: { error?: string } }).data;
  return data?.error ? `slack: ${data.error}` : ((e as Error).message ?? String(e));
}

/**
 * Why Butler's listeners will not act on a payload (then it is acknowledged, audited and
 * otherwise ignored), or undefined when it is a press of one of Butler's buttons or its deny form.
 */
function notOurs(body: unknown): string | undefined {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return "not an interaction payload";
  const b = body as Record<string, unknown>;
  const obj = (v: unknown) => (v !== null && typeof v === "object" ? (v as Record<string, unknown>) : {});
  const name = (v: unknown) =>
    typeof v === "string" ? v.slice(0, 100) : JSON.stringify(v ?? null).slice(0, 100);
  if (typeof b.type !== "string") return "payload without a type";
  if (b.type === "block_actions") {
    if (typeof obj(b.user).id !== "string") return "block action without a user";
    const first = Array.isArray(b.actions) ? obj(b.actions[0]) : undefined;
    if (!first) return "block action without actions";
    if (typeof first.action_id !== "string" || !BUTTONS.has(first.action_id))
      return `unknown action ${name(first.action_id)}`;
    return undefined;
  }
  if (b.type === "view_submission") {
    if (typeof obj(b.user).id !== "string") return "form submission without a user";
    const callback = obj(b.view).callback_id;
    if (callback !== DENY_MODAL) return `unknown form ${name(callback)}`;
    return undefined;
  }
  return `unsupported interaction type ${name(b.type)}`;
}

/**
 * Bolt behind this fastify server: raw bodies (for the signature), verification that refuses
 * timestamps more than five minutes off either way, then Bolt's own processing, whose `ack()`
 * answers the HTTP request (Slack waits three seconds). An authentic request is never answered
 * with a 5xx for what it says (Slack would only send it again): what Butler does not act on is
 * acknowledged with 200 and audited. Only a channel not yet connected, or a listener slower than
 * Slack waits, answers 503.
 */
class FastifyReceiver implements Receiver {
  private app: App | undefined;
  constructor(
    private readonly signingSecret: string,
    private readonly hooks: ChannelHooks,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly channel: { ready(): boolean; ignore(body: unknown, reason: string): Promise<void> },
  ) {}
  init(app: App): void {
    this.app = app;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  verify(raw: string, timestamp: string | undefined, signature: string | undefined): string | undefined {
    if (!timestamp || !/^\d{1,12}$/.test(timestamp)) return "missing or malformed X-Slack-Request-Timestamp";
    const skew = Math.abs(Math.floor(this.clock.now().getTime() / 1000) - Number(timestamp));
    if (skew > MAX_SKEW_SECONDS) return `stale timestamp (${skew} s from now)`;
    if (!signature?.startsWith("v0=")) return "missing or malformed X-Slack-Signature";
    const expected = Buffer.from(
      `v0=${createHmac("sha256", this.signingSecret).update(`v0:${timestamp}:${raw}`).digest("hex")}`,
    );
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "signature mismatch";
    return undefined;
  }

  plugin = async (f: FastifyInstance): Promise<void> => {
    // Encapsulated: only this route reads raw bodies.
    f.removeAllContentTypeParsers();
    f.addContentTypeParser(
      ["application/json", "application/x-www-form-urlencoded"],
      { parseAs: "string" },
      (_req, body, done) => done(null, body),
    );
    const doc: RouteDoc = {
      tag: "chat",
      summary: "Slack's interactions and events (HTTP mode): button presses on approval cards",
      auth: ["slack"],
      rawBody: {
        types: ["application/x-www-form-urlencoded", "application/json"],
        description: "What Slack sends, signed",
      },
    };
    f.post("/slack/events", { config: { doc } }, async (req, reply) => {
      const raw = typeof req.body === "string" ? req.body : "";
      const problem = this.verify(
        raw,
        header(req.headers["x-slack-request-timestamp"]),
        header(req.headers["x-slack-signature"]),
      );
      if (problem) {
        await this.hooks.rejected("slack", problem, { ip: req.ip });
        return reply
          .code(401)
          .send({ error: { code: "UNAUTHENTICATED", message: `Slack request refused: ${problem}` } });
      }
      let body: unknown;
      try {
        const type = String(req.headers["content-type"] ?? "")
          .split(";")[0]!
          .trim();
        if (type === "application/x-www-form-urlencoded") {
          const form = parseQuery(raw);
          body = typeof form.payload === "string" ? JSON.parse(form.payload) : form;
        } else body = JSON.parse(raw);
      } catch {
        return reply
          .code(400)
          .send({ error: { code: "INVALID_INPUT", message: "the Slack payload is not valid JSON" } });
      }
      const b = (body !== null && typeof body === "object" ? body : {}) as Record<string, unknown>;
      if (b.ssl_check) return reply.send();
      if (b.type === "url_verification") return reply.send({ challenge: b.challenge });
      if (!this.channel.ready())
        return reply
          .code(503)
          .header("retry-after", String(RETRY_AFTER_SECONDS))
          .send({
            error: { code: "UNAVAILABLE", message: "Slack approvals are not connected yet; try again" },
          });
      const ignored = notOurs(body);
      if (ignored) {
        await this.channel.ignore(body, ignored);
        return reply.code(200).send();
      }
      return new Promise((resolve) => {
        let acked = false;
        const answer = (status: number, response?: unknown): boolean => {
          if (acked) return false;
          acked = true;
          clearTimeout(timer);
          if (status === 503) reply.header("retry-after", String(RETRY_AFTER_SECONDS));
          resolve(
            response === undefined || response === ""
              ? reply.code(status).send()
              : reply.code(status).send(response),
          );
          return true;
        };
        // Slack gives up after three seconds; what was pressed may still be decided after this.
        const timer = setTimeout(() => answer(503), 3001);
        const event: ReceiverEvent = {
          body: b,
          retryNum: req.headers["x-slack-retry-num"] ? Number(req.headers["x-slack-retry-num"]) : undefined,
          retryReason: header(req.headers["x-slack-retry-reason"]),
          ack: async (response?: unknown) => {
            answer(200, response);
          },
        };
        this.app!.processEvent(event).then(
          async () => {
            if (answer(200)) await this.channel.ignore(body, "no listener acknowledged the interaction");
          },
          async (e) => {
            this.log.error({ err: e }, "slack event failed");
            if (answer(200)) await this.channel.ignore(body, "the interaction could not be handled");
          },
        );
      });
    });
  };
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Bolt's logger interface over pino. */
function boltLogger(log: Logger): SlackLogger {
  const child = log.child({ component: "slack" });
  let level: LogLevel = LogLevel.INFO;
  return {
    debug: (...m: unknown[]) => child.debug(m.map(String).join(" ")),
    info: (...m: unknown[]) => child.info(m.map(String).join(" ")),
    warn: (...m: unknown[]) => child.warn(m.map(String).join(" ")),
    error: (...m: unknown[]) => child.error(m.map(String).join(" ")),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
