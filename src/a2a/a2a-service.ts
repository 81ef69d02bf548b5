import {
  A2A_PROTOCOL_VERSION,
  AgentCard,
  type ListTaskPushNotificationConfigsResponse,
  type ListTasksRequest,
  type ListTasksResponse,
  Message,
  type SendMessageRequest,
  StreamResponse,
  Task,
  type TaskPushNotificationConfig,
  TaskState,
  taskStateToJSON,
} from "@a2a-js/sdk";
import {
  ExtendedAgentCardNotConfiguredError,
  RequestMalformedError,
  TaskNotCancelableError,
  TaskNotFoundError,
  UnsupportedOperationError,
} from "@a2a-js/sdk/errors";
import type { A2ARequestHandler, ServerCallContext, User } from "@a2a-js/sdk/server";
import { and, count, desc, eq, gt, lt, ne, notInArray, or, type SQL, sql } from "drizzle-orm";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Butler } from "../butler/butler-service.js";
import type { AgentNotification, AgentNotifier } from "../butler/notifier.js";
import { CreateRequestBody } from "../butler/request-schema.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import { type Db, rowsOf, type Tx } from "../db/client.js";
import { a2aPushConfigs, a2aTasks, accessRequests } from "../db/schema.js";
import { AppError, isAppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import { enqueue, type OutboxMessage } from "../outbox/outbox.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import type { PushSealer } from "./push-secrets.js";
import { checkPushUrl, type PushAllowlist } from "./push-url.js";
import {
  type GrantArtifact,
  outcomeOf,
  type TaskOutcome,
  type TaskStateName,
  TERMINAL,
} from "./task-state.js";

/** The caller of an A2A method: an agent, authenticated by its Butler token. */
export class AgentUser implements User {
  constructor(readonly identity: AgentIdentity) {}
  get isAuthenticated(): boolean {
    return true;
  }
  get userName(): string {
    return `${this.identity.project}/${this.identity.agent}`;
  }
}

function ownerOf(ctx: ServerCallContext): AgentIdentity {
  const user = ctx.user;
  // The route authenticates every call before it reaches the handler; this is a second lock.
  if (!(user instanceof AgentUser)) throw new AppError("UNAUTHENTICATED", "an agent token is required");
  return user.identity;
}

type TaskRow = typeof a2aTasks.$inferSelect;
type WireTask = Record<string, unknown> & {
  id: string;
  contextId: string;
  status: Record<string, unknown>;
  artifacts: Record<string, unknown>[];
  history: Record<string, unknown>[];
  metadata: Record<string, unknown>;
};

const STATE_ENUM: Record<TaskStateName, TaskState> = {
  submitted: TaskState.TASK_STATE_SUBMITTED,
  input_required: TaskState.TASK_STATE_INPUT_REQUIRED,
  completed: TaskState.TASK_STATE_COMPLETED,
  rejected: TaskState.TASK_STATE_REJECTED,
  canceled: TaskState.TASK_STATE_CANCELED,
  failed: TaskState.TASK_STATE_FAILED,
};
const wireState = (s: TaskStateName) => taskStateToJSON(STATE_ENUM[s]);
const stateName = (s: TaskState): TaskStateName | undefined =>
  (Object.entries(STATE_ENUM) as [TaskStateName, TaskState][]).find(([, v]) => v === s)?.[0];

/** What an agent must send, told to agents whose message has no usable data part. */
export const EXPECTED_FIELDS =
  "send a message with a data part (mediaType application/json) holding {action, resource, branch?, ttl?, reason, denial_event_id?, params?}, " +
  'for example {"action": "stripe:charges:read", "resource": "stripe.com/v1/charges", "ttl": "PT1H", ' +
  '"reason": "reconcile yesterday\'s payouts", "denial_event_id": "evt_…"}; denial_event_id is the event_id of the DENY being lifted; params (the denied call\'s, unchanged) only after an approval_required DENY';

function agentMessage(taskId: string, contextId: string, text: string): Record<string, unknown> {
  return {
    messageId: newId("msg"),
    contextId,
    taskId,
    role: "ROLE_AGENT",
    parts: [{ text, mediaType: "text/plain" }],
  };
}

function grantArtifact(g: GrantArtifact): Record<string, unknown> {
  return {
    artifactId: "grant",
    name: "grant",
    description: `Access to ${g.action} on ${g.resource}: ${g.state}`,
    parts: [{ data: { ...g }, mediaType: "application/json" }],
  };
}

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * A stored task with the keys the Butler writes today: tasks stored by earlier versions carried
 * snake_case keys in `metadata.butler` and in the grant artifact's data (every A2A object the
 * Butler emits uses camelCase, the protocol's convention). Rewritten when read, and stored so
 * at the task's next change.
 */
function currentWire(wire: Record<string, unknown>): WireTask {
  const t = wire as WireTask;
  const butler = (t.metadata as { butler?: Record<string, unknown> } | undefined)?.butler;
  const legacyMeta = butler && Object.keys(butler).some((k) => k.includes("_"));
  const legacyArtifacts = (t.artifacts ?? []).some((a) =>
    ((a.parts ?? []) as { data?: Record<string, unknown> }[]).some(
      (p) => p.data && Object.keys(p.data).some((k) => k.includes("_")),
    ),
  );
  if (!legacyMeta && !legacyArtifacts) return t;
  const camelObject = (o: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [camel(k), v]));
  return {
    ...t,
    metadata: butler ? { ...t.metadata, butler: camelObject(butler) } : t.metadata,
    artifacts: (t.artifacts ?? []).map((a) => ({
      ...a,
      parts: ((a.parts ?? []) as { data?: Record<string, unknown> }[]).map((p) =>
        p.data ? { ...p, data: camelObject(p.data) } : p,
      ),
    })),
  };
}

/** A stored task as the SDK's Task, with history trimmed as asked. */
function toTask(wire: Record<string, unknown>, historyLength?: number, includeArtifacts = true): Task {
  const t = Task.fromJSON(currentWire(wire));
  if (historyLength !== undefined) t.history = historyLength <= 0 ? [] : t.history.slice(-historyLength);
  if (!includeArtifacts) t.artifacts = [];
  return t;
}

function streamEvent(payload: StreamResponse["payload"]): Record<string, unknown> {
  return StreamResponse.toJSON({ payload }) as Record<string, unknown>;
}

/** An async queue a subscription waits on; ends when its signal aborts. */
class Waiter<T> {
  #items: T[] = [];
  #wake: (() => void) | undefined;
  push(item: T) {
    this.#items.push(item);
    this.#wake?.();
  }
  async next(signal: AbortSignal): Promise<T | undefined> {
    while (this.#items.length === 0) {
      if (signal.aborted) return undefined;
      let onAbort: (() => void) | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
      });
      signal.removeEventListener("abort", onAbort!);
      this.#wake = undefined;
    }
    return this.#items.shift();
  }
}

export interface A2ADeps {
  db: Db;
  butler: Butler;
  policies: Pick<PolicyStore, "index">;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  clock: Clock;
  log: Logger;
  publicUrl: () => string;
  pushAllowlist: PushAllowlist;
  /** Seals push-config tokens and credentials at rest (push-secrets.ts). */
  pushSealer: PushSealer;
  /** Outbox messages were committed. */
  onEnqueued: () => void;
  version: string;
}

/** The form of the task ids the Butler gives out (newId("task")). */
const TASK_ID = /^task_[a-z0-9]{16}$/;

/** Push receivers per task: each costs a delivery per task event. */
const MAX_PUSH_CONFIGS = 5;

/** Whether agent-written JSON carries a NUL, which the database cannot store in text. */
const hasNul = (v: unknown) => JSON.stringify(v ?? null).includes("\\u0000");

/** Streams of a call: aborted when the client goes away or the server stops. */
const signals = new WeakMap<ServerCallContext, AbortSignal>();
export function bindSignal(ctx: ServerCallContext, signal: AbortSignal): void {
  signals.set(ctx, signal);
}

/**
 * The Butler as an A2A agent. An agent asks for access with a message whose data part is an access
 * request; the task waits in INPUT_REQUIRED while people decide, and ends COMPLETED (with the grant
 * as its artifact), REJECTED, CANCELED or FAILED (expired). Tasks and push configs are rows, so any
 * instance answers for any task and a waiting task survives restarts. The task is moved from the
 * request's truth (`sync`), called after the agent's own call and by the outbox after every
 * decision; each change bumps the task's version, enqueues pushes in the same transaction, and is
 * announced on the change bus so that every instance's open streams hear it.
 */
export function createA2A(deps: A2ADeps) {
  const { db, butler, clock, log } = deps;
  const listeners = new Map<string, Set<() => void>>();

  deps.changes.subscribe((c) => {
    if (c.kind === "a2a_task") for (const l of listeners.get(c.taskId) ?? []) l();
    else if (c.kind === "resync") for (const set of listeners.values()) for (const l of set) l();
  });

  function listen(taskId: string, fn: () => void): () => void {
    const set = listeners.get(taskId) ?? new Set<() => void>();
    listeners.set(taskId, set);
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) listeners.delete(taskId);
    };
  }

  async function load(q: Db | Tx, owner: AgentIdentity, id: string): Promise<TaskRow> {
    // Only ids of the Butler's own form reach the database: any other text is no task of ours.
    const [row] =
      typeof id === "string" && TASK_ID.test(id)
        ? await q
            .select()
            .from(a2aTasks)
            .where(
              and(eq(a2aTasks.id, id), eq(a2aTasks.agent, owner.agent), eq(a2aTasks.project, owner.project)),
            )
        : [];
    // Another agent's task is exactly as invisible as one that does not exist.
    if (!row)
      throw new TaskNotFoundError(
        `task ${TASK_ID.test(String(id)) ? id : JSON.stringify(String(id).slice(0, 64))} not found`,
      );
    return row;
  }

  /** Push messages for a task's events, one queue per receiver so that each gets them in order. */
  async function pushesFor(q: Db | Tx, taskId: string, events: Record<string, unknown>[], state: string) {
    const configs = await q.select().from(a2aPushConfigs).where(eq(a2aPushConfigs.taskId, taskId));
    const out: OutboxMessage[] = [];
    for (const c of configs)
      for (const event of events)
        out.push({
          topic: "a2a.push",
          key: `a2a-push:${c.id}`,
          payload: { configId: c.id, taskId, state, event },
        });
    return out;
  }

  /**
   * Moves a task to where its access request says it should be. Idempotent: called twice, or
   * with nothing new, it changes nothing. Returns the task as it is afterwards.
   */
  async function sync(
    taskId: string,
    known: { revision?: number | null | undefined; revokeReason?: string | null | undefined } = {},
  ): Promise<TaskRow> {
    let changed = false;
    const row = await db.transaction(async (tx) => {
      const [row] = await tx.select().from(a2aTasks).where(eq(a2aTasks.id, taskId)).for("update");
      if (!row) throw new TaskNotFoundError(`task ${taskId} not found`);
      if (!row.requestId) return row;
      // Read under the lock, so that two syncs either side of an expiry cannot cross.
      const now = clock.now();
      const view = await butler.get(row.requestId, tx);
      const task = currentWire(row.task);
      const previousGrant = (task.artifacts?.[0]?.parts as { data?: GrantArtifact }[] | undefined)?.[0]?.data;
      const outcome = outcomeOf(view, now, {
        revision:
          known.revision ??
          previousGrant?.revision ??
          deps.policies.index().projects.get(view.project)?.revision,
        revokeReason: known.revokeReason ?? previousGrant?.reason,
      });
      const statusText = ((task.status?.message as { parts?: { text?: string }[] } | undefined)?.parts ??
        [])[0]?.text;
      // A grant once revoked or expired never comes back to life on the task.
      if (outcome.grant && row.grantState && row.grantState !== "live")
        outcome.grant.state = row.grantState as GrantArtifact["state"];
      const grantState = outcome.grant?.state ?? null;
      // A task that ended stays ended; only its grant's fate (revoked, expired) is still news.
      if (TERMINAL.has(row.state) && (outcome.state !== row.state || grantState === row.grantState))
        return row;
      if (outcome.state === row.state && grantState === row.grantState && outcome.text === statusText)
        return row;

      changed = true;
      return applyOutcome(tx, row, task, outcome, now);
    });
    if (changed) deps.onEnqueued();
    return row;
  }

  /**
   * Writes a task's new state: the task row (version bumped), its audit line, the pushes of its
   * events, and the change announced to every instance's open streams, all in `tx`.
   */
  async function applyOutcome(
    tx: Tx,
    row: TaskRow,
    task: WireTask,
    outcome: TaskOutcome,
    now: Date,
  ): Promise<TaskRow> {
    const grantState = outcome.grant?.state ?? null;
    const status = {
      state: wireState(outcome.state),
      message: agentMessage(row.id, row.contextId, outcome.text),
      timestamp: now.toISOString(),
    };
    const next: WireTask = {
      ...task,
      status,
      artifacts: outcome.grant ? [grantArtifact(outcome.grant)] : [],
      history: [...(task.history ?? []), status.message],
    };
    const events: Record<string, unknown>[] = [];
    if (outcome.grant && grantState !== row.grantState) {
      events.push(
        streamEvent({
          $case: "artifactUpdate",
          value: {
            taskId: row.id,
            contextId: row.contextId,
            artifact: toTask(next).artifacts[0],
            append: false,
            lastChunk: true,
            metadata: undefined,
          },
        }),
      );
    }
    events.push(
      streamEvent({
        $case: "statusUpdate",
        value: {
          taskId: row.id,
          contextId: row.contextId,
          status: toTask(next).status,
          metadata: undefined,
        },
      }),
    );
    const [updated] = await tx
      .update(a2aTasks)
      .set({ state: outcome.state, grantState, task: next, version: row.version + 1, updatedAt: now })
      .where(eq(a2aTasks.id, row.id))
      .returning();
    await deps.audit.appendInTx(tx, [
      {
        type: "a2a.task_updated",
        agent: row.agent,
        project: row.project,
        details: {
          task_id: row.id,
          request_id: row.requestId,
          state: outcome.state,
          grant_state: grantState,
          version: row.version + 1,
        },
      },
    ]);
    await enqueue(tx, await pushesFor(tx, row.id, events, outcome.state), now);
    await deps.changes.publish(tx, { kind: "a2a_task", taskId: row.id });
    return updated!;
  }

  /** Checks a push config completely (before anything is stored); returns its checked URL. */
  function checkPushConfig(c: TaskPushNotificationConfig): URL {
    const checked = checkPushUrl(c.url, deps.pushAllowlist);
    if (!checked.ok) throw new RequestMalformedError(checked.error);
    if (c.token.length > 512)
      throw new RequestMalformedError("push notification token: must be at most 512 characters");
    if (c.authentication && c.authentication.credentials.length > 4096)
      throw new RequestMalformedError("push notification credentials: must be at most 4096 characters");
    if (c.authentication && !/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(c.authentication.scheme))
      throw new RequestMalformedError(
        "push notification authentication scheme: must be a word such as Bearer",
      );
    if (/[\u0000-\u001f\u007f]/.test(`${c.token}${c.authentication?.credentials ?? ""}${c.id}`))
      throw new RequestMalformedError(
        "push notification token and credentials must not contain control characters",
      );
    // They are stored sealed, never in plaintext: without a key they are refused, before anything is stored.
    if ((c.token || c.authentication?.credentials) && !deps.pushSealer.canSeal)
      throw new UnsupportedOperationError(
        "this server stores push notification tokens and credentials encrypted and has no key for it (its operator sets BUTLER_MASTER_KEY); send the push notification config without token and authentication",
      );
    return checked.value;
  }

  async function savePushConfig(
    tx: Tx,
    taskId: string,
    c: TaskPushNotificationConfig,
  ): Promise<(typeof a2aPushConfigs.$inferSelect)[]> {
    const url = checkPushConfig(c).href;
    const [{ n }] = (await tx
      .select({ n: count() })
      .from(a2aPushConfigs)
      .where(eq(a2aPushConfigs.taskId, taskId))) as [{ n: number }];
    if (Number(n) >= MAX_PUSH_CONFIGS)
      throw new RequestMalformedError(
        `task ${taskId} already has ${MAX_PUSH_CONFIGS} push notification configs; delete one first`,
      );
    const id =
      c.id && /^[A-Za-z0-9_.-]{1,64}$/.test(c.id) ? `${taskId}:${c.id}` : `${taskId}:${newId("push")}`;
    const token = deps.pushSealer.seal(id, "token", c.token);
    const authCredentials = c.authentication
      ? deps.pushSealer.seal(id, "credentials", c.authentication.credentials)
      : null;
    return tx
      .insert(a2aPushConfigs)
      .values({
        id,
        taskId,
        url,
        token,
        authScheme: c.authentication?.scheme ?? null,
        authCredentials,
        createdAt: clock.now(),
      })
      .onConflictDoUpdate({
        target: a2aPushConfigs.id,
        set: { url, token, authScheme: c.authentication?.scheme ?? null, authCredentials },
      })
      .returning();
  }

  /** A stored config with its token and credentials opened. */
  function opened(c: typeof a2aPushConfigs.$inferSelect): typeof a2aPushConfigs.$inferSelect {
    return {
      ...c,
      token: deps.pushSealer.open(c.id, "token", c.token),
      authCredentials:
        c.authCredentials === null ? null : deps.pushSealer.open(c.id, "credentials", c.authCredentials),
    };
  }

  function configView(stored: typeof a2aPushConfigs.$inferSelect): TaskPushNotificationConfig {
    const c = opened(stored);
    return {
      tenant: "",
      id: c.id.slice(c.taskId.length + 1),
      taskId: c.taskId,
      url: c.url,
      token: c.token,
      authentication: c.authScheme
        ? { scheme: c.authScheme, credentials: c.authCredentials ?? "" }
        : undefined,
    };
  }

  /** Files the access request a message asks for and opens its task. */
  async function start(params: SendMessageRequest, owner: AgentIdentity): Promise<TaskRow> {
    const message = params.message;
    if (!message) throw new RequestMalformedError("params.message is required");
    if (message.taskId) {
      const row = await load(db, owner, message.taskId);
      if (TERMINAL.has(row.state))
        throw new UnsupportedOperationError(
          `task ${row.id} is ${row.state} and cannot take more messages; send a new message without taskId to ask again`,
        );
      // The task waits for people, not for the agent: a further message changes nothing.
      return row;
    }
    if (hasNul(Message.toJSON(message)) || hasNul(params.configuration?.taskPushNotificationConfig))
      throw new RequestMalformedError("the message must not contain NUL characters");
    const push = params.configuration?.taskPushNotificationConfig;
    // Everything is checked before the request is filed: a refusal leaves nothing behind.
    if (push?.url) checkPushConfig(push);
    const dataParts = message.parts.filter((p) => p.content?.$case === "data");
    if (dataParts.length > 1)
      throw new RequestMalformedError(`send one data part per message (this one has ${dataParts.length})`);
    const data = dataParts[0]?.content?.$case === "data" ? dataParts[0].content.value : undefined;
    let input: ReturnType<typeof CreateRequestBody.parse> | undefined;
    if (data !== undefined) {
      try {
        input = parseInput(CreateRequestBody, data, "data");
      } catch (e) {
        if (isAppError(e)) throw new RequestMalformedError(`${e.message}; ${EXPECTED_FIELDS}`);
        throw e;
      }
    }
    const taskId = newId("task");
    const contextId = message.contextId && message.contextId.length <= 128 ? message.contextId : newId("ctx");
    const now = clock.now();
    let requestId: string | null = null;
    // At most a few rounds: another task of the agent may cancel the identical request meanwhile.
    for (let round = 0; ; round++) {
      if (round === 3)
        throw new Error("the identical access request kept being canceled while this task was opened");
      let refused: string | undefined;
      requestId = null;
      let grant: GrantArtifact | undefined;
      if (!input) refused = `no access request in this message: ${EXPECTED_FIELDS}`;
      else {
        try {
          const r = await butler.submit(owner, input);
          if (r.status === "already_allowed") {
            grant = {
              grantId: r.grant_id,
              requestId: null,
              action: r.action,
              resource: r.resource,
              branch: r.branch,
              expiresAt: r.expires_at,
              revision: r.revision,
              state: "live",
              revokedAt: null,
              approvedBy: null,
              reason: null,
            };
          } else requestId = r.request.id;
        } catch (e) {
          if (
            !isAppError(e) ||
            !["INVALID_INPUT", "FORBIDDEN", "NOT_FOUND", "CONFLICT", "PRECONDITION_FAILED"].includes(e.code)
          )
            throw e;
          refused = e.message;
        }
      }
      const state: TaskStateName = refused ? "rejected" : grant ? "completed" : "submitted";
      const userMessage = Message.toJSON({ ...message, taskId, contextId }) as Record<string, unknown>;
      const text =
        refused ?? (grant ? `already allowed: ${grant.grantId}; go ahead` : "filed; asking approvers");
      const status = {
        state: wireState(state),
        message: agentMessage(taskId, contextId, text),
        timestamp: now.toISOString(),
      };
      const wire: WireTask = {
        id: taskId,
        contextId,
        status,
        artifacts: grant ? [grantArtifact(grant)] : [],
        history: [userMessage, status.message],
        metadata: { butler: { requestId, project: owner.project, agent: owner.agent } },
      };
      const inserted = await db.transaction(async (tx) => {
        // The request this task waits on, locked while the task is added: an agent cancelling its
        // other task on the same request decides under this lock, so it sees this task waiting.
        // A request cancelled between filing and here is filed again (it is no longer pending).
        if (requestId) {
          const [r] = await tx
            .select({ status: accessRequests.status })
            .from(accessRequests)
            .where(eq(accessRequests.id, requestId))
            .for("share");
          if (r?.status === "canceled") return false;
        }
        await tx.insert(a2aTasks).values({
          id: taskId,
          agent: owner.agent,
          project: owner.project,
          contextId,
          requestId,
          state,
          grantState: grant ? "live" : null,
          task: wire,
          createdAt: now,
          updatedAt: now,
        });
        if (push?.url) await savePushConfig(tx, taskId, { ...push, taskId });
        await deps.audit.appendInTx(tx, [
          {
            type: "a2a.task_opened",
            agent: owner.agent,
            project: owner.project,
            reason: refused ?? null,
            details: {
              task_id: taskId,
              request_id: requestId,
              state,
              context_id: contextId,
              push: Boolean(push?.url),
            },
          },
        ]);
        await enqueue(
          tx,
          await pushesFor(tx, taskId, [streamEvent({ $case: "task", value: toTask(wire) })], state),
          now,
        );
        return true;
      });
      if (inserted) break;
    }
    deps.onEnqueued();
    // The request may have been decided already (an approver was quick, or it is an identical
    // pending request): the task catches up with it at once.
    return requestId ? sync(taskId) : (await db.select().from(a2aTasks).where(eq(a2aTasks.id, taskId)))[0]!;
  }

  const card = (): AgentCard => ({
    name: "Butler",
    description:
      "Governance gateway for AI agents: ask for access to an action that was denied, and hear back the moment a human approves. No agent can grant itself anything.",
    version: deps.version,
    supportedInterfaces: [
      {
        url: `${deps.publicUrl()}/a2a`,
        protocolBinding: "JSONRPC",
        tenant: "",
        protocolVersion: A2A_PROTOCOL_VERSION,
      },
    ],
    provider: { organization: "Butler", url: deps.publicUrl() },
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: false },
    securitySchemes: {
      bearer: {
        scheme: {
          $case: "httpAuthSecurityScheme",
          value: {
            scheme: "Bearer",
            bearerFormat: "butler-agent-token",
            description: "The agent's Butler token (butler agents create), the same one /v1/authorize takes.",
          },
        },
      },
    },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ["application/json"],
    defaultOutputModes: ["application/json", "text/plain"],
    skills: [
      {
        id: "request-access",
        name: "Request access",
        description:
          "Files a scoped access request for a call the gateway denied. The task stays INPUT_REQUIRED while the project's approvers decide, then COMPLETED with the grant {grantId, requestId, action, resource, expiresAt, revision, state} as its artifact, REJECTED with the approver's reason, CANCELED, or FAILED when nobody decided in time.",
        tags: ["access", "approval", "governance"],
        examples: [
          '{"action":"stripe:charges:read","resource":"stripe.com/v1/charges","ttl":"PT1H","reason":"reconcile payouts","denial_event_id":"evt_0123456789abcdef"}',
          '{"action":"git:push","resource":"github.com/acme/api","branch":"feature/*","ttl":"PT30M","reason":"push the fix for ISSUE-42"}',
        ],
        inputModes: ["application/json"],
        outputModes: ["application/json", "text/plain"],
        securityRequirements: [],
      },
    ],
    signatures: [],
  });

  const handler: A2ARequestHandler = {
    async getAgentCard() {
      return card();
    },
    async getAuthenticatedExtendedAgentCard() {
      throw new ExtendedAgentCardNotConfiguredError("this agent has no extended agent card");
    },
    async sendMessage(params, ctx) {
      const row = await start(params, ownerOf(ctx));
      return toTask(row.task, params.configuration?.historyLength);
    },
    async *sendMessageStream(params, ctx) {
      const row = await start(params, ownerOf(ctx));
      // The task is already waiting for people (an interrupted state) or finished: the stream
      // ends here, and SubscribeToTask (or a push) carries what happens next.
      yield { payload: { $case: "task", value: toTask(row.task, params.configuration?.historyLength) } };
    },
    async getTask(params, ctx) {
      let row = await load(db, ownerOf(ctx), params.id);
      // A task whose news was lost (an outbox message given up) catches up when read.
      if (!TERMINAL.has(row.state) && row.requestId) row = await sync(row.id);
      return toTask(row.task, params.historyLength);
    },
    async cancelTask(params, ctx) {
      const owner = ownerOf(ctx);
      let row = await load(db, owner, params.id);
      if (TERMINAL.has(row.state)) throw new TaskNotCancelableError(`task ${row.id} is already ${row.state}`);
      if (row.requestId) {
        const requestId = row.requestId;
        let alone = false;
        try {
          // Asking twice for the same call files one request, waited on by both tasks: cancelling
          // one task cancels the request only when no other live task waits on it. Decided under
          // the request's row lock, so two tasks cancelled at once cancel the request once, last.
          await butler.cancel(owner, requestId, {
            unlessStillWanted: async (tx) => {
              const [mine] = await tx.select().from(a2aTasks).where(eq(a2aTasks.id, row.id)).for("update");
              if (!mine || TERMINAL.has(mine.state)) return true;
              const [other] = await tx
                .select({ id: a2aTasks.id })
                .from(a2aTasks)
                .where(
                  and(
                    eq(a2aTasks.requestId, requestId),
                    ne(a2aTasks.id, mine.id),
                    notInArray(a2aTasks.state, [...TERMINAL]),
                  ),
                )
                .limit(1);
              if (!other) return false;
              await applyOutcome(
                tx,
                mine,
                currentWire(mine.task),
                {
                  state: "canceled",
                  text: `task canceled by the agent; access request ${requestId} stays open for the agent's other task waiting on it (${other.id})`,
                },
                clock.now(),
              );
              alone = true;
              return true;
            },
          });
        } catch (e) {
          if (!isAppError(e) || e.code !== "ALREADY_DECIDED") throw e;
        }
        if (alone) deps.onEnqueued();
        row = alone
          ? (await db.select().from(a2aTasks).where(eq(a2aTasks.id, row.id)))[0]!
          : await sync(row.id);
      }
      if (row.state !== "canceled")
        throw new TaskNotCancelableError(`task ${row.id} is already ${row.state}`);
      return toTask(row.task);
    },
    async *resubscribe(params, ctx) {
      const owner = ownerOf(ctx);
      const signal = signals.get(ctx) ?? new AbortController().signal;
      const waiter = new Waiter<true>();
      // Listen before reading, so that a change between the read and the wait is not missed.
      const stop = listen(params.id, () => waiter.push(true));
      try {
        let row = await load(db, owner, params.id);
        if (!TERMINAL.has(row.state) && row.requestId) row = await sync(row.id);
        if (TERMINAL.has(row.state))
          throw new UnsupportedOperationError(`task ${row.id} is ${row.state}; read it with GetTask`);
        yield { payload: { $case: "task", value: toTask(row.task) } };
        for (;;) {
          if ((await waiter.next(signal)) === undefined) return;
          const [fresh] = await db.select().from(a2aTasks).where(eq(a2aTasks.id, row.id));
          if (!fresh || fresh.version <= row.version) continue;
          const before = row;
          row = fresh;
          const t = toTask(fresh.task);
          if (fresh.grantState !== before.grantState && t.artifacts[0])
            yield {
              payload: {
                $case: "artifactUpdate",
                value: {
                  taskId: t.id,
                  contextId: t.contextId,
                  artifact: t.artifacts[0],
                  append: false,
                  lastChunk: true,
                  metadata: undefined,
                },
              },
            };
          yield {
            payload: {
              $case: "statusUpdate",
              value: { taskId: t.id, contextId: t.contextId, status: t.status, metadata: undefined },
            },
          };
          if (TERMINAL.has(fresh.state)) return;
        }
      } finally {
        stop();
      }
    },
    async listTasks(params: ListTasksRequest, ctx): Promise<ListTasksResponse> {
      const owner = ownerOf(ctx);
      const pageSize = params.pageSize === undefined || params.pageSize === 0 ? 50 : params.pageSize;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100)
        throw new RequestMalformedError("pageSize: must be between 1 and 100");
      const where: SQL[] = [eq(a2aTasks.agent, owner.agent), eq(a2aTasks.project, owner.project)];
      if (params.contextId) where.push(eq(a2aTasks.contextId, params.contextId));
      if (params.status) {
        const s = stateName(params.status);
        if (!s)
          throw new RequestMalformedError(`status: Butler tasks are never ${taskStateToJSON(params.status)}`);
        where.push(eq(a2aTasks.state, s));
      }
      if (params.statusTimestampAfter) {
        const t = new Date(params.statusTimestampAfter);
        if (Number.isNaN(t.getTime()))
          throw new RequestMalformedError("statusTimestampAfter: must be a timestamp");
        where.push(gt(a2aTasks.updatedAt, t));
      }
      const [{ total }] = (await db
        .select({ total: count() })
        .from(a2aTasks)
        .where(and(...where))) as [{ total: number }];
      if (params.pageToken) {
        const m = /^(\d{1,15})\.(task_[a-z0-9]{16})$/.exec(
          Buffer.from(params.pageToken, "base64url").toString("utf8"),
        );
        if (!m) throw new RequestMalformedError("pageToken: not a token this server gave out");
        const at = new Date(Number(m[1]));
        where.push(or(lt(a2aTasks.updatedAt, at), and(eq(a2aTasks.updatedAt, at), lt(a2aTasks.id, m[2]!)))!);
      }
      const rows = await db
        .select()
        .from(a2aTasks)
        .where(and(...where))
        .orderBy(desc(a2aTasks.updatedAt), desc(a2aTasks.id))
        .limit(pageSize + 1);
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        tasks: page.map((r) => toTask(r.task, params.historyLength, params.includeArtifacts ?? false)),
        nextPageToken:
          rows.length > pageSize && last
            ? Buffer.from(`${last.updatedAt.getTime()}.${last.id}`).toString("base64url")
            : "",
        pageSize,
        totalSize: Number(total),
      };
    },
    async createTaskPushNotificationConfig(params, ctx) {
      const row = await load(db, ownerOf(ctx), params.taskId);
      const [saved] = await db.transaction((tx) => savePushConfig(tx, row.id, params));
      return configView(saved!);
    },
    async getTaskPushNotificationConfig(params, ctx) {
      const row = await load(db, ownerOf(ctx), params.taskId);
      const [c] = await db
        .select()
        .from(a2aPushConfigs)
        .where(and(eq(a2aPushConfigs.taskId, row.id), eq(a2aPushConfigs.id, `${row.id}:${params.id}`)));
      if (!c) throw new TaskNotFoundError(`task ${row.id} has no push notification config ${params.id}`);
      return configView(c);
    },
    async listTaskPushNotificationConfigs(params, ctx): Promise<ListTaskPushNotificationConfigsResponse> {
      const row = await load(db, ownerOf(ctx), params.taskId);
      const configs = await db.select().from(a2aPushConfigs).where(eq(a2aPushConfigs.taskId, row.id));
      return { configs: configs.map(configView), nextPageToken: "" };
    },
    async deleteTaskPushNotificationConfig(params, ctx) {
      const row = await load(db, ownerOf(ctx), params.taskId);
      // Idempotent, as the protocol says: deleting a config that is gone (or never was) succeeds;
      // only an unknown task is an error.
      await db
        .delete(a2aPushConfigs)
        .where(and(eq(a2aPushConfigs.taskId, row.id), eq(a2aPushConfigs.id, `${row.id}:${params.id}`)));
    },
  };

  const notifier: AgentNotifier = {
    /** Brings every task waiting on the request up to date; returns how many there are. */
    async notify(n: AgentNotification): Promise<number> {
      const rows = await db
        .select({ id: a2aTasks.id })
        .from(a2aTasks)
        .where(
          and(
            eq(a2aTasks.requestId, n.requestId),
            eq(a2aTasks.agent, n.agent),
            eq(a2aTasks.project, n.project),
          ),
        );
      for (const r of rows) await sync(r.id, { revision: n.revision, revokeReason: n.reason });
      return rows.length;
    },
  };

  /**
   * Brings up to date tasks whose request moved without the task hearing of it (a notification
   * given up after its retries, a crash between filing and the first sync). Run by the sweeper.
   */
  async function catchUp(limit = 100): Promise<number> {
    const now = clock.now();
    const stale = rowsOf<{ id: string }>(
      await db.execute(sql`
        SELECT t.id FROM a2a_tasks t JOIN access_requests r ON r.id = t.request_id
        LEFT JOIN grants g ON g.id = r.id
        WHERE t.state = 'submitted'
           OR (t.state = 'input_required' AND r.status <> 'pending')
           OR (t.state = 'completed' AND t.grant_state = 'live'
               AND (g.revoked_at IS NOT NULL OR g.expires_at <= ${now.toISOString()}))
        LIMIT ${limit}`),
    );
    for (const t of stale)
      await sync(t.id).catch((e) => log.warn({ err: e, task: t.id }, "task catch-up failed"));
    return stale.length;
  }

  /** Push configs of a task (for the outbox handler). */
  async function pushTarget(configId: string) {
    const [c] = await db.select().from(a2aPushConfigs).where(eq(a2aPushConfigs.id, configId));
    return c && opened(c);
  }

  return {
    handler,
    /** The agent card (the SDK's object). */
    card,
    /** The agent card as wire JSON. */
    cardJson: () => AgentCard.toJSON(card()),
    notifier,
    sync,
    catchUp,
    pushTarget,
  };
}

export type A2AService = ReturnType<typeof createA2A>;
