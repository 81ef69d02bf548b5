import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { parse as parseQuery } from "node:querystring";
import { type WebSocket, WebSocketServer } from "ws";
import { Observed } from "./observed.js";
import { slackMessageError } from "./slack-contract.js";

export interface SlackCall {
  method: string;
  args: Record<string, any>;
}

export interface SlackMessage {
  channel: string;
  ts: string;
  text: string;
  blocks: any[];
  replies: string[];
}

type Scripted = {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  /** Only for a call with these arguments (default: the next call of the method, whatever it is). */
  when?: (args: Record<string, any>) => boolean;
};

/**
 * A local Slack Web API (and Socket Mode endpoint) that behaves like Slack where the product
 * depends on it: bearer-token auth (`invalid_auth`), `ok:false` errors, Block Kit limits
 * (`invalid_blocks`), unknown channels and messages, 429 with `Retry-After` when told to.
 */
export class FakeSlack extends Observed {
  readonly calls: SlackCall[] = [];
  readonly messages = new Map<string, SlackMessage>();
  readonly users = new Map<string, { email: string; name: string }>();
  readonly channels = new Set<string>(["C0APPROVALS"]);
  /** Responses to give, in order, to the next calls of a method (then back to normal). */
  readonly script = new Map<string, Scripted[]>();
  readonly acks: Record<string, any>[] = [];
  #server: Server | undefined;
  #wss: WebSocketServer | undefined;
  #socket: WebSocket | undefined;
  #ts = 1_700_000_000;
  url = "";

  constructor(
    readonly botToken = "xoxb-test-bot-token",
    readonly appToken = "xapp-test-app-token",
  ) {
    super();
  }

  async start(): Promise<this> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#wss = new WebSocketServer({ noServer: true });
    this.#server.on("upgrade", (req, socket, head) => {
      if (!req.url?.startsWith("/socket")) return socket.destroy();
      this.#wss!.handleUpgrade(req, socket, head, (ws) => {
        this.#socket = ws;
        ws.on("message", (data) => {
          this.acks.push(JSON.parse(String(data)));
          this.changed();
        });
        ws.send(
          JSON.stringify({
            type: "hello",
            num_connections: 1,
            debug_info: { host: "fake" },
            connection_info: { app_id: "A0FAKE" },
          }),
        );
        this.changed();
      });
    });
    await new Promise<void>((r) => this.#server!.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}/api`;
    return this;
  }

  async stop(): Promise<void> {
    this.#socket?.close();
    this.#wss?.close();
    this.#server?.closeAllConnections();
    await new Promise<void>((r) => this.#server?.close(() => r()) ?? r());
  }

  /** Whether a Socket Mode client is connected. */
  get socketConnected(): boolean {
    return this.#socket?.readyState === 1;
  }

  /** Sends an envelope over Socket Mode, as Slack does for interactions, and waits for its ack. */
  async sendEnvelope(type: "interactive" | "events_api", payload: unknown): Promise<Record<string, any>> {
    const envelopeId = `env_${Math.random().toString(36).slice(2)}`;
    this.#socket!.send(
      JSON.stringify({ envelope_id: envelopeId, type, payload, accepts_response_payload: true }),
    );
    const acked = () => this.acks.find((a) => a.envelope_id === envelopeId);
    await this.next(() => acked() !== undefined, "the envelope's ack", 5000);
    return acked()!;
  }

  calledWith(method: string): SlackCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** The card posted to a channel (or a user's direct message) for a request. */
  cardFor(requestId: string): SlackMessage | undefined {
    return [...this.messages.values()].find((m) => JSON.stringify(m.blocks).includes(requestId));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const method = (req.url ?? "").replace(/^\/api\//, "").split("?")[0]!;
    const type = String(req.headers["content-type"] ?? "");
    const form = type.includes("json") ? JSON.parse(raw || "{}") : parseQuery(raw);
    const args: Record<string, any> = {};
    for (const [k, v] of Object.entries(form)) {
      try {
        args[k] = typeof v === "string" && /^[[{]/.test(v) ? JSON.parse(v) : v;
      } catch {
        args[k] = v;
      }
    }
    this.calls.push({ method, args });
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
      this.changed();
    };
    const queue = this.script.get(method) ?? [];
    const at = queue.findIndex((x) => !x.when || x.when(args));
    const scripted = at === -1 ? undefined : queue.splice(at, 1)[0];
    if (scripted) return send(scripted.status, scripted.body, scripted.headers);
    const auth = String(req.headers.authorization ?? "");
    const token = method === "apps.connections.open" ? this.appToken : this.botToken;
    if (auth !== `Bearer ${token}`) return send(200, { ok: false, error: "invalid_auth" });
    const fail = (error: string) => send(200, { ok: false, error });
    switch (method) {
      case "auth.test":
        return send(200, {
          ok: true,
          user_id: "U0BUTLER",
          bot_id: "B0BUTLER",
          team_id: "T0FAKE",
          user: "butler",
        });
      case "apps.connections.open": {
        const port = (this.#server!.address() as AddressInfo).port;
        return send(200, { ok: true, url: `ws://127.0.0.1:${port}/socket` });
      }
      case "conversations.open": {
        const user = String(args.users ?? "");
        if (!this.users.has(user)) return fail("user_not_found");
        const id = `D${user.slice(1)}`;
        this.channels.add(id);
        return send(200, { ok: true, channel: { id } });
      }
      case "chat.postMessage": {
        const channel = String(args.channel ?? "");
        if (!this.channels.has(channel)) return fail("channel_not_found");
        const error = slackMessageError(args);
        if (error) return fail(error);
        if (args.thread_ts) {
          const parent = this.messages.get(`${channel}:${args.thread_ts}`);
          if (!parent) return fail("thread_not_found");
          parent.replies.push(String(args.text));
          return send(200, { ok: true, channel, ts: String(++this.#ts) });
        }
        const ts = `${++this.#ts}.000100`;
        this.messages.set(`${channel}:${ts}`, {
          channel,
          ts,
          text: String(args.text ?? ""),
          blocks: args.blocks ?? [],
          replies: [],
        });
        return send(200, { ok: true, channel, ts });
      }
      case "chat.update": {
        const key = `${args.channel}:${args.ts}`;
        const m = this.messages.get(key);
        if (!m) return fail("message_not_found");
        const error = slackMessageError(args);
        if (error) return fail(error);
        m.text = String(args.text ?? "");
        m.blocks = args.blocks ?? [];
        return send(200, { ok: true, channel: m.channel, ts: m.ts });
      }
      case "chat.postEphemeral":
        return send(200, { ok: true, message_ts: String(++this.#ts) });
      case "views.open":
        if (!args.trigger_id) return fail("invalid_trigger_id");
        return send(200, { ok: true, view: { id: "V0FAKE" } });
      case "users.info": {
        const u = this.users.get(String(args.user));
        if (!u) return fail("user_not_found");
        return send(200, { ok: true, user: { id: args.user, name: u.name, profile: { email: u.email } } });
      }
      case "users.lookupByEmail": {
        const found = [...this.users].find(([, u]) => u.email === args.email);
        if (!found) return fail("users_not_found");
        return send(200, { ok: true, user: { id: found[0], name: found[1].name } });
      }
      default:
        return fail("unknown_method");
    }
  }
}
