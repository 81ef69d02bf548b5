import { Message, type TaskPushNotificationConfig } from "@a2a-js/sdk";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Butler } from "../butler/butler-service.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db, Queryable, Tx } from "../db/client.js";
import { isAppError } from "../errors.js";
import { newId } from "../ids.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import type { PushConfigStore } from "./push-config-store.js";
import {
  type AccessRequestInput,
  dataInput,
  EXPECTED_FIELDS,
  grantOf,
  hasNul,
  nextWire,
  openingWire,
  statusText,
  streamEvent,
  type TaskListQuery,
  toTask,
  type WireTask,
} from "./sdk-mapping.js";
import type { TaskRow } from "./task-repo.js";
import * as repo from "./task-repo.js";
import {
  type GrantArtifact,
  nextOutcome,
  outcomeOf,
  TaskFault,
  type TaskOutcome,
  type TaskStateName,
  TERMINAL,
} from "./task-state.js";
import { type TaskWatch, Waiter } from "./task-watch.js";

/** What the task use cases need; each use case is one transaction (plus the Butler's own). */
export interface TaskServiceDeps {
  db: Db;
  butler: Pick<Butler, "get" | "submit" | "cancel">;
  policies: Pick<PolicyStore, "index">;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish">;
  clock: Clock;
  pushes: PushConfigStore;
  watch: TaskWatch;
  /** Outbox messages were committed. */
  onEnqueued: () => void;
}

/** What the agent last heard of the grant, kept on the task when its request is read again. */
export interface KnownGrant {
  revision?: number | null | undefined;
  revokeReason?: string | null | undefined;
}

/** Butler errors that refuse the access request itself: the task is opened REJECTED with the reason. */
const REFUSALS = ["INVALID_INPUT", "FORBIDDEN", "NOT_FOUND", "CONFLICT", "PRECONDITION_FAILED"];

/** A task of this agent, or a not-found fault (another agent's task included). */
async function loadOwned(q: Queryable, owner: AgentIdentity, id: string): Promise<TaskRow> {
  const row = await repo.findOwnedTask(q, owner, id);
  if (!row)
    throw new TaskFault(
      "not_found",
      `task ${repo.TASK_ID.test(String(id)) ? id : JSON.stringify(String(id).slice(0, 64))} not found`,
    );
  return row;
}

/**
 * Writes a task's new state: the task row (version bumped), its audit line, the pushes of its
 * events, and the change announced to every instance's open streams, all in `tx`.
 */
async function applyOutcome(
  d: TaskServiceDeps,
  tx: Tx,
  row: TaskRow,
  task: WireTask,
  outcome: TaskOutcome,
  now: Date,
): Promise<TaskRow> {
  const { wire, events } = nextWire(task, row, outcome, now);
  const grantState = outcome.grant?.state ?? null;
  const version = row.version + 1;
  const updated = await repo.updateTask(tx, row.id, {
    state: outcome.state,
    grantState,
    task: wire,
    version,
    updatedAt: now,
  });
  await d.audit.appendInTx(tx, [
    {
      type: "a2a.task_updated",
      agent: row.agent,
      project: row.project,
      details: {
        task_id: row.id,
        request_id: row.requestId,
        state: outcome.state,
        grant_state: grantState,
        version,
      },
    },
  ]);
  await d.pushes.queuePushes(tx, row.id, events, outcome.state, now);
  await d.changes.publish(tx, { kind: "a2a_task", taskId: row.id });
  return updated;
}

/**
 * Moves a task to where its access request says it should be. Idempotent: called twice, or
 * with nothing new, it changes nothing. Returns the task as it is afterwards.
 */
async function syncTask(d: TaskServiceDeps, taskId: string, known: KnownGrant = {}): Promise<TaskRow> {
  let changed = false;
  const row = await d.db.transaction(async (tx) => {
    const row = await repo.lockTask(tx, taskId);
    if (!row) throw new TaskFault("not_found", `task ${taskId} not found`);
    if (!row.requestId) return row;
    // Read under the lock, so that two syncs either side of an expiry cannot cross.
    const now = d.clock.now();
    const view = await d.butler.get(row.requestId, tx);
    const task = row.task as WireTask;
    const previousGrant = grantOf(task);
    const outcome = outcomeOf(view, now, {
      revision:
        known.revision ?? previousGrant?.revision ?? d.policies.index().projects.get(view.project)?.revision,
      revokeReason: known.revokeReason ?? previousGrant?.reason,
    });
    const next = nextOutcome(
      { state: row.state, grantState: row.grantState, text: statusText(task) },
      outcome,
    );
    if (!next) return row;
    changed = true;
    return applyOutcome(d, tx, row, task, next, now);
  });
  if (changed) d.onEnqueued();
  return row;
}

/** A task of this agent, caught up with its request first if its news may have been lost. */
async function readTask(d: TaskServiceDeps, owner: AgentIdentity, id: string): Promise<TaskRow> {
  const row = await loadOwned(d.db, owner, id);
  // A task whose news was lost (an outbox message given up) catches up when read.
  return !TERMINAL.has(row.state) && row.requestId ? syncTask(d, row.id) : row;
}

/** What filing the message's access request came to. */
interface Filed {
  requestId: string | null;
  /** The call is already allowed: the grant that allows it. */
  grant?: GrantArtifact;
  /** Why the request was refused, in the Butler's words. */
  refused?: string;
}

async function fileRequest(
  d: TaskServiceDeps,
  owner: AgentIdentity,
  input: AccessRequestInput | undefined,
): Promise<Filed> {
  if (!input) return { requestId: null, refused: `no access request in this message: ${EXPECTED_FIELDS}` };
  try {
    const r = await d.butler.submit(owner, input);
    if (r.status !== "already_allowed") return { requestId: r.request.id };
    const grant: GrantArtifact = {
      grant_id: r.grant_id,
      request_id: null,
      action: r.action,
      resource: r.resource,
      branch: r.branch,
      resource_pattern: null,
      expires_at: r.expires_at,
      revision: r.revision,
      state: "active",
      revoked_at: null,
      approved_by: null,
      reason: null,
    };
    return { requestId: null, grant };
  } catch (e) {
    if (!isAppError(e) || !REFUSALS.includes(e.code)) throw e;
    return { requestId: null, refused: e.message };
  }
}

interface Opening extends Filed {
  owner: AgentIdentity;
  taskId: string;
  contextId: string;
  message: Message;
  push: TaskPushNotificationConfig | undefined;
  now: Date;
}

/**
 * Stores a new task with its push config, audit line and first push, in one transaction. False
 * when the request it would wait on was canceled meanwhile (it is to be filed again).
 */
async function openTask(d: TaskServiceDeps, o: Opening): Promise<boolean> {
  const state: TaskStateName = o.refused ? "rejected" : o.grant ? "completed" : "submitted";
  const text =
    o.refused ?? (o.grant ? `already allowed: ${o.grant.grant_id}; go ahead` : "filed; asking approvers");
  const { owner, taskId, contextId, requestId, now } = o;
  const butler = { request_id: requestId, project: owner.project, agent: owner.agent };
  const wire = openingWire({
    taskId,
    contextId,
    message: o.message,
    state,
    text,
    grant: o.grant,
    butler,
    now,
  });
  return d.db.transaction(async (tx) => {
    // The request this task waits on, locked while the task is added: an agent cancelling its
    // other task on the same request decides under this lock, so it sees this task waiting.
    // A request cancelled between filing and here is filed again (it is no longer pending).
    if (requestId && (await repo.lockRequestStatus(tx, requestId)) === "canceled") return false;
    await repo.insertTask(tx, {
      id: taskId,
      agent: owner.agent,
      project: owner.project,
      contextId,
      requestId,
      state,
      grantState: o.grant ? "active" : null,
      task: wire,
      createdAt: now,
      updatedAt: now,
    });
    if (o.push?.url) await d.pushes.save(tx, taskId, { ...o.push, taskId });
    await d.audit.appendInTx(tx, [
      {
        type: "a2a.task_opened",
        agent: owner.agent,
        project: owner.project,
        reason: o.refused ?? null,
        details: {
          task_id: taskId,
          request_id: requestId,
          state,
          context_id: contextId,
          push: Boolean(o.push?.url),
        },
      },
    ]);
    await d.pushes.queuePushes(tx, taskId, [streamEvent({ $case: "task", value: toTask(wire) })], state, now);
    return true;
  });
}

/**
 * Files the access request a message asks for and opens its task. A message to an open task
 * changes nothing (the task waits for people, not for the agent).
 */
async function startTask(
  d: TaskServiceDeps,
  owner: AgentIdentity,
  message: Message | undefined,
  push: TaskPushNotificationConfig | undefined,
): Promise<TaskRow> {
  if (!message) throw new TaskFault("malformed", "params.message is required");
  if (message.taskId) {
    const row = await loadOwned(d.db, owner, message.taskId);
    if (TERMINAL.has(row.state))
      throw new TaskFault(
        "unsupported",
        `task ${row.id} is ${row.state} and cannot take more messages; send a new message without taskId to ask again`,
      );
    return row;
  }
  if (hasNul(Message.toJSON(message)) || hasNul(push))
    throw new TaskFault("malformed", "the message must not contain NUL characters");
  // Everything is checked before the request is filed: a refusal leaves nothing behind.
  if (push?.url) d.pushes.check(push);
  const input = dataInput(message);
  if (!input.ok) throw new TaskFault("malformed", input.error);
  const taskId = newId("task");
  const contextId = message.contextId && message.contextId.length <= 128 ? message.contextId : newId("ctx");
  const now = d.clock.now();
  let requestId: string | null = null;
  // At most a few rounds: another task of the agent may cancel the identical request meanwhile.
  for (let round = 0; ; round++) {
    if (round === 3)
      throw new Error("the identical access request kept being canceled while this task was opened");
    const filed = await fileRequest(d, owner, input.value);
    requestId = filed.requestId;
    if (await openTask(d, { ...filed, owner, taskId, contextId, message, push, now })) break;
  }
  d.onEnqueued();
  // The request may have been decided already (an approver was quick, or it is an identical
  // pending request): the task catches up with it at once.
  return requestId ? syncTask(d, taskId) : (await repo.findTask(d.db, taskId))!;
}

/**
 * Cancels the request a task waits on, unless another live task of the agent waits on it too:
 * then only this task is canceled. Returns the task as it is afterwards.
 */
async function cancelRequestOf(
  d: TaskServiceDeps,
  owner: AgentIdentity,
  row: TaskRow,
  requestId: string,
): Promise<TaskRow> {
  let alone = false;
  try {
    // Asking twice for the same call files one request, waited on by both tasks: cancelling
    // one task cancels the request only when no other live task waits on it. Decided under
    // the request's row lock, so two tasks cancelled at once cancel the request once, last.
    await d.butler.cancel(owner, requestId, {
      unlessStillWanted: async (tx) => {
        const mine = await repo.lockTask(tx, row.id);
        if (!mine || TERMINAL.has(mine.state)) return true;
        const other = await repo.otherLiveTask(tx, requestId, mine.id);
        if (!other) return false;
        const text = `task canceled by the agent; access request ${requestId} stays open for the agent's other task waiting on it (${other.id})`;
        await applyOutcome(d, tx, mine, mine.task as WireTask, { state: "canceled", text }, d.clock.now());
        alone = true;
        return true;
      },
    });
  } catch (e) {
    if (!isAppError(e) || e.code !== "ALREADY_DECIDED") throw e;
  }
  if (!alone) return syncTask(d, row.id);
  d.onEnqueued();
  return (await repo.findTask(d.db, row.id))!;
}

/** The agent cancels its task (and the request it waits on, when no other task waits on it). */
export async function cancelTask(d: TaskServiceDeps, owner: AgentIdentity, id: string): Promise<TaskRow> {
  let row = await loadOwned(d.db, owner, id);
  const notCancelable = () => new TaskFault("not_cancelable", `task ${row.id} is already ${row.state}`);
  if (TERMINAL.has(row.state)) throw notCancelable();
  if (row.requestId) row = await cancelRequestOf(d, owner, row, row.requestId);
  if (row.state !== "canceled") throw notCancelable();
  return row;
}

/** A task as it changes: first as it is, then each newer version, until it ends or `signal` aborts. */
export async function* followTask(
  d: TaskServiceDeps,
  owner: AgentIdentity,
  id: string,
  signal: AbortSignal,
): AsyncGenerator<{ row: TaskRow; previous?: TaskRow }> {
  const waiter = new Waiter<true>();
  // Listen before reading, so that a change between the read and the wait is not missed.
  const stop = d.watch.listen(id, () => waiter.push(true));
  try {
    let row = await readTask(d, owner, id);
    if (TERMINAL.has(row.state))
      throw new TaskFault("unsupported", `task ${row.id} is ${row.state}; read it with GetTask`);
    yield { row };
    for (;;) {
      if ((await waiter.next(signal)) === undefined) return;
      const fresh = await repo.findTask(d.db, row.id);
      if (!fresh || fresh.version <= row.version) continue;
      const previous = row;
      row = fresh;
      yield { row, previous };
      if (TERMINAL.has(row.state)) return;
    }
  } finally {
    stop();
  }
}

/** The task use cases, bound to their dependencies. */
export function createTaskService(d: TaskServiceDeps) {
  return {
    start: (
      owner: AgentIdentity,
      message: Message | undefined,
      push: TaskPushNotificationConfig | undefined,
    ) => startTask(d, owner, message, push),
    sync: (taskId: string, known?: KnownGrant) => syncTask(d, taskId, known),
    read: (owner: AgentIdentity, id: string) => readTask(d, owner, id),
    cancel: (owner: AgentIdentity, id: string) => cancelTask(d, owner, id),
    follow: (owner: AgentIdentity, id: string, signal: AbortSignal) => followTask(d, owner, id, signal),
    list: (owner: AgentIdentity, query: TaskListQuery) => repo.listOwnedTasks(d.db, owner, query),
    async savePushConfig(
      owner: AgentIdentity,
      c: TaskPushNotificationConfig,
    ): Promise<TaskPushNotificationConfig> {
      const row = await loadOwned(d.db, owner, c.taskId);
      return d.db.transaction((tx) => d.pushes.save(tx, row.id, c));
    },
    async pushConfig(owner: AgentIdentity, taskId: string, id: string): Promise<TaskPushNotificationConfig> {
      const row = await loadOwned(d.db, owner, taskId);
      const c = await d.pushes.find(d.db, row.id, id);
      if (!c) throw new TaskFault("not_found", `task ${row.id} has no push notification config ${id}`);
      return c;
    },
    async pushConfigs(owner: AgentIdentity, taskId: string): Promise<TaskPushNotificationConfig[]> {
      const row = await loadOwned(d.db, owner, taskId);
      return d.pushes.list(d.db, row.id);
    },
    /** Idempotent, as the protocol says: only an unknown task is an error. */
    async deletePushConfig(owner: AgentIdentity, taskId: string, id: string): Promise<void> {
      const row = await loadOwned(d.db, owner, taskId);
      await d.pushes.remove(d.db, row.id, id);
    },
  };
}

export type TaskService = ReturnType<typeof createTaskService>;
