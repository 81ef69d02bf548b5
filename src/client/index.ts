import { randomUUID } from "node:crypto";
import { AGENT_CARD_PATH, AgentCard, Role, type StreamResponse, type Task, TaskState } from "@a2a-js/sdk";
import {
  type Client,
  ClientFactory,
  ClientFactoryOptions,
  JsonRpcTransportFactory,
} from "@a2a-js/sdk/client";
import type { GrantArtifact as Grant } from "../a2a/task-state.js";

/**
 * A small client for agent authors: ask the gateway, and when it says no, ask a human over A2A and
 * retry once the grant is live.
 *
 *   const butler = new ButlerClient({ url: "http://127.0.0.1:8080", token: process.env.BUTLER_TOKEN! });
 *   const charges = await butler.withAccess(
 *     { action: "stripe:charges:read", resource: "stripe.com/v1/charges", reason: "reconcile payouts", ttl: "PT1H" },
 *     () => stripe.charges.list(),
 *   );
 */

export interface ButlerClientOptions {
  /** The Butler server, e.g. http://127.0.0.1:8080. */
  url: string;
  /** The agent's Butler token (`butler agents create`). */
  token: string;
  /** Another fetch, for proxies or tests. */
  fetch?: typeof fetch;
}

/** A call the gateway decides on. */
export interface Call {
  action: string;
  resource?: string;
  branch?: string;
  params?: Record<string, unknown>;
}

/** The gateway's answer to `authorize()`. */
export interface Decision {
  decision: "ALLOW" | "DENY";
  reason: string;
  event_id: string;
  revision: number | null;
  http_status: number;
  grant_id?: string;
  expires?: string;
  approved_by?: string;
  request_access?: unknown;
}

export interface AccessRequest {
  action?: string;
  resource?: string;
  branch?: string;
  /** ISO 8601 duration (PT1H) or seconds; default: the project's default TTL. */
  ttl?: string | number;
  /** Why the agent needs it, for the person who decides. */
  reason: string;
  /** The event id of the DENY to lift; the request is then scoped to exactly that call. */
  denial_event_id?: string;
}

/** The grant as the Butler's A2A task reports it (the task's `grant` artifact). */
export type { GrantArtifact as Grant } from "../a2a/task-state.js";

export type AccessOutcome =
  | { granted: true; taskId: string; grant: Grant; message: string }
  | { granted: false; taskId: string; state: "rejected" | "canceled" | "failed"; message: string };

/** Thrown when the Butler answers with an error (bad token, bad input). */
export class ButlerError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "ButlerError";
  }
}

/** Thrown by `withAccess` when access was not granted. */
export class AccessDenied extends Error {
  constructor(
    message: string,
    readonly decision: Decision,
    readonly outcome?: AccessOutcome,
  ) {
    super(message);
    this.name = "AccessDenied";
  }
}

const TERMINAL = new Set([
  TaskState.TASK_STATE_COMPLETED,
  TaskState.TASK_STATE_REJECTED,
  TaskState.TASK_STATE_CANCELED,
  TaskState.TASK_STATE_FAILED,
]);

function textOf(task: Task): string {
  const part = task.status?.message?.parts.find((p) => p.content?.$case === "text");
  return part?.content?.$case === "text" ? part.content.value : "";
}

function apply(task: Task | undefined, ev: StreamResponse): Task | undefined {
  const p = ev.payload;
  if (!p) return task;
  if (p.$case === "task") return p.value;
  if (!task) return task;
  if (p.$case === "statusUpdate") return { ...task, status: p.value.status };
  if (p.$case === "artifactUpdate" && p.value.artifact) {
    const rest = task.artifacts.filter((a) => a.artifactId !== p.value.artifact!.artifactId);
    return { ...task, artifacts: [...rest, p.value.artifact] };
  }
  return task;
}

export class ButlerClient {
  readonly #url: string;
  readonly #token: string;
  readonly #fetch: typeof fetch;
  #a2a: Promise<Client> | undefined;

  constructor(opts: ButlerClientOptions) {
    this.#url = opts.url.replace(/\/+$/, "");
    this.#token = opts.token;
    this.#fetch = opts.fetch ?? fetch;
  }

  /** Asks the gateway whether the agent may make a call (every answer is in the audit log). */
  async authorize(call: Call): Promise<Decision> {
    const res = await this.#fetch(`${this.#url}/v1/authorize`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${this.#token}` },
      body: JSON.stringify(call),
    });
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok || (body.decision !== "ALLOW" && body.decision !== "DENY")) {
      const err = body.error as { message?: string } | undefined;
      throw new ButlerError(err?.message ?? `the Butler answered HTTP ${res.status}`, res.status);
    }
    return body as unknown as Decision;
  }

  /** The A2A client, made once from the Butler's agent card; every call carries the agent's token. */
  a2a(): Promise<Client> {
    const origin = new URL(this.#url).origin;
    // The token goes to the Butler the agent was configured with, and nowhere else.
    const authFetch: typeof fetch = (input, init) => {
      const target = new URL(
        typeof input === "string" ? input : input instanceof URL ? input.href : input.url,
      );
      const headers = new Headers(init?.headers);
      if (target.origin === origin) headers.set("authorization", `Bearer ${this.#token}`);
      return this.#fetch(input, { ...init, headers });
    };
    this.#a2a ??= (async () => {
      const res = await this.#fetch(`${this.#url}/${AGENT_CARD_PATH}`);
      if (!res.ok) throw new ButlerError(`the Butler's agent card answered HTTP ${res.status}`, res.status);
      const card = AgentCard.fromJSON(await res.json());
      const named = card.supportedInterfaces.find((i) => i.protocolBinding === "JSONRPC")?.url;
      if (!named || new URL(named).origin !== origin)
        throw new ButlerError(
          `the Butler's agent card names ${named ?? "no JSON-RPC endpoint"}, not ${origin}: set BUTLER_PUBLIC_URL on the server to the URL agents use, or use the URL the card names`,
          502,
        );
      return new ClientFactory(
        ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
          transports: [new JsonRpcTransportFactory({ fetchImpl: authFetch })],
        }),
      ).createFromAgentCard(card);
    })();
    const made = this.#a2a;
    made.catch(() => {
      if (this.#a2a === made) this.#a2a = undefined;
    });
    return made;
  }

  /**
   * Files an access request over A2A and waits, without polling, until people decide: the task's
   * stream, then SubscribeToTask (reconnecting if the connection drops) until the task ends.
   */
  async requestAccess(
    request: AccessRequest,
    opts: { signal?: AbortSignal; onUpdate?: (task: Task) => void } = {},
  ): Promise<AccessOutcome> {
    const client = await this.a2a();
    const signal = opts.signal;
    let task: Task | undefined;
    const stream = client.sendMessageStream(
      {
        tenant: "",
        message: {
          messageId: randomUUID(),
          contextId: "",
          taskId: "",
          role: Role.ROLE_USER,
          parts: [
            {
              content: { $case: "data", value: { ...request } },
              metadata: undefined,
              filename: "",
              mediaType: "application/json",
            },
          ],
          metadata: undefined,
          extensions: [],
          referenceTaskIds: [],
        },
        configuration: undefined,
        metadata: undefined,
      },
      { signal },
    );
    for await (const ev of stream) {
      task = apply(task, ev);
      if (task) opts.onUpdate?.(task);
    }
    if (!task) throw new ButlerError("the Butler's stream ended without a task", 502);
    let failures = 0;
    while (!TERMINAL.has(task.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED)) {
      signal?.throwIfAborted();
      try {
        for await (const ev of client.resubscribeTask({ tenant: "", id: task.id }, { signal })) {
          task = apply(task, ev) ?? task;
          opts.onUpdate?.(task);
          failures = 0;
        }
      } catch (e) {
        signal?.throwIfAborted();
        // The task ended between two subscriptions (terminal tasks cannot be subscribed to), or
        // the connection dropped: read it, and subscribe again if it is still waiting.
        task = await client
          .getTask({ tenant: "", id: task.id, historyLength: 0 }, { signal })
          .catch(() => task!);
        opts.onUpdate?.(task);
        if (!TERMINAL.has(task.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED)) {
          // Not the task's end: the connection or the server went away. Back off, then resubscribe.
          if (++failures > 20) throw e;
          await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** Math.min(failures, 7))));
        }
      }
    }
    const message = textOf(task);
    const state = task.status!.state;
    if (state === TaskState.TASK_STATE_COMPLETED) {
      const part = task.artifacts.find((a) => a.artifactId === "grant")?.parts[0];
      const grant = part?.content?.$case === "data" ? (part.content.value as unknown as Grant) : undefined;
      if (grant) return { granted: true, taskId: task.id, grant, message };
    }
    const names = new Map([
      [TaskState.TASK_STATE_REJECTED, "rejected"],
      [TaskState.TASK_STATE_CANCELED, "canceled"],
      [TaskState.TASK_STATE_FAILED, "failed"],
    ] as const);
    return { granted: false, taskId: task.id, state: names.get(state as never) ?? "failed", message };
  }

  /**
   * Runs `fn` when the gateway allows `call`. On a DENY it files a request scoped to exactly that
   * denial, waits for people to decide, asks the gateway again, and runs `fn` once allowed.
   */
  async withAccess<T>(
    call: Call & Pick<AccessRequest, "reason" | "ttl">,
    fn: (decision: Decision) => Promise<T> | T,
    opts: {
      signal?: AbortSignal;
      /** Each state of the A2A task while people decide. */
      onUpdate?: (task: Task) => void;
      /** Each answer of the gateway: the first one, and the retry after a grant. */
      onDecision?: (decision: Decision, attempt: "first" | "retry") => void;
    } = {},
  ): Promise<T> {
    const { reason, ttl, ...gated } = call;
    const first = await this.authorize(gated);
    opts.onDecision?.(first, "first");
    if (first.decision === "ALLOW") return fn(first);
    if (!first.request_access)
      throw new AccessDenied(`denied, and no person can lift it: ${first.reason}`, first);
    const outcome = await this.requestAccess(
      { reason, ...(ttl !== undefined ? { ttl } : {}), denial_event_id: first.event_id },
      opts,
    );
    if (!outcome.granted)
      throw new AccessDenied(`access was not granted: ${outcome.message}`, first, outcome);
    const retry = await this.authorize(gated);
    opts.onDecision?.(retry, "retry");
    if (retry.decision !== "ALLOW")
      throw new AccessDenied(`granted, but the gateway still denies: ${retry.reason}`, retry, outcome);
    return fn(retry);
  }
}
