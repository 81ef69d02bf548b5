import {
  type ListTasksRequest,
  Message,
  StreamResponse,
  Task,
  type TaskPushNotificationConfig,
  TaskState,
  taskStateToJSON,
} from "@a2a-js/sdk";
import {
  type A2AError,
  RequestMalformedError,
  TaskNotCancelableError,
  TaskNotFoundError,
  UnsupportedOperationError,
} from "@a2a-js/sdk/errors";
import { CreateRequestBody } from "../butler/request-schema.js";
import { isAppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import { newId } from "../ids.js";
import { err, ok, type Result } from "../result.js";
import type { GrantArtifact, TaskFault, TaskFaultKind, TaskOutcome, TaskStateName } from "./task-state.js";

/**
 * The A2A SDK's types and our task model, both ways (pure, apart from fresh message ids). A task
 * is stored as the protocol's Task JSON ("wire" form), so that what the agent reads is exactly
 * what was written; these functions build and read that form. The protocol's fields keep the A2A
 * specification's names (camelCase); what the Butler puts inside them (the grant artifact's data,
 * `metadata.butler`) is snake_case, as every JSON object the Butler defines.
 */

/** A task in the protocol's JSON form, as stored in `a2a_tasks.task`. */
export type WireTask = Record<string, unknown> & {
  id: string;
  contextId: string;
  status: Record<string, unknown>;
  artifacts: Record<string, unknown>[];
  history: Record<string, unknown>[];
  metadata: Record<string, unknown>;
};

/** What an access request in a message's data part looks like once checked. */
export type AccessRequestInput = ReturnType<typeof CreateRequestBody.parse>;

const STATE_ENUM: Record<TaskStateName, TaskState> = {
  submitted: TaskState.TASK_STATE_SUBMITTED,
  input_required: TaskState.TASK_STATE_INPUT_REQUIRED,
  completed: TaskState.TASK_STATE_COMPLETED,
  rejected: TaskState.TASK_STATE_REJECTED,
  canceled: TaskState.TASK_STATE_CANCELED,
  failed: TaskState.TASK_STATE_FAILED,
};

/** A task state as the protocol writes it (`TASK_STATE_INPUT_REQUIRED`). */
export const wireState = (s: TaskStateName): string => taskStateToJSON(STATE_ENUM[s]);

/** Our name for an SDK task state; undefined for states a Butler task never takes. */
export const stateName = (s: TaskState): TaskStateName | undefined =>
  (Object.entries(STATE_ENUM) as [TaskStateName, TaskState][]).find(([, v]) => v === s)?.[0];

/** What an agent must send, told to agents whose message has no usable data part. */
export const EXPECTED_FIELDS =
  "send a message with a data part (mediaType application/json) holding {action, resource, branch?, resource_pattern?, ttl?, reason, denial_event_id?, params?}, " +
  'for example {"action": "stripe:charges:read", "resource": "stripe.com/v1/charges", "ttl": "PT1H", ' +
  '"reason": "reconcile yesterday\'s payouts", "denial_event_id": "evt_…"}; denial_event_id is the event_id of the DENY being lifted; params (the denied call\'s, unchanged) only after an approval_required DENY';

/** A text message from the Butler to the agent, in wire form. */
function agentMessage(taskId: string, contextId: string, text: string): Record<string, unknown> {
  return {
    messageId: newId("msg"),
    contextId,
    taskId,
    role: "ROLE_AGENT",
    parts: [{ text, mediaType: "text/plain" }],
  };
}

/** The task's one artifact: the grant, as a data part. */
function grantArtifact(g: GrantArtifact): Record<string, unknown> {
  return {
    artifactId: "grant",
    name: "grant",
    description: `Access to ${g.action} on ${g.resource}: ${g.state}`,
    parts: [{ data: { ...g }, mediaType: "application/json" }],
  };
}

/** The Butler's own part of a task's metadata (`metadata.butler`), snake_case like all its JSON. */
interface ButlerMetadata {
  /** The access request the task waits on; null when nothing was filed. */
  request_id: string | null;
  project: string;
  agent: string;
}

/** A stored task as the SDK's Task, with history trimmed as asked. */
export function toTask(wire: Record<string, unknown>, historyLength?: number, includeArtifacts = true): Task {
  const t = Task.fromJSON(wire);
  if (historyLength !== undefined) t.history = historyLength <= 0 ? [] : t.history.slice(-historyLength);
  if (!includeArtifacts) t.artifacts = [];
  return t;
}

/** The grant a stored task carries as its artifact, if any. */
export function grantOf(task: WireTask): GrantArtifact | undefined {
  return (task.artifacts?.[0]?.parts as { data?: GrantArtifact }[] | undefined)?.[0]?.data;
}

/** The text of a stored task's status message. */
export function statusText(task: WireTask): string | undefined {
  return ((task.status?.message as { parts?: { text?: string }[] } | undefined)?.parts ?? [])[0]?.text;
}

/** A stream event (a push body, an SSE event's result) in wire form. */
export function streamEvent(payload: StreamResponse["payload"]): Record<string, unknown> {
  return StreamResponse.toJSON({ payload }) as Record<string, unknown>;
}

/**
 * The events that tell a listener about a task's change: its artifact when the grant's state
 * changed, then its status.
 */
export function updatePayloads(t: Task, grantChanged: boolean): NonNullable<StreamResponse["payload"]>[] {
  const out: NonNullable<StreamResponse["payload"]>[] = [];
  if (grantChanged && t.artifacts[0])
    out.push({
      $case: "artifactUpdate",
      value: {
        taskId: t.id,
        contextId: t.contextId,
        artifact: t.artifacts[0],
        append: false,
        lastChunk: true,
        metadata: undefined,
      },
    });
  out.push({
    $case: "statusUpdate",
    value: { taskId: t.id, contextId: t.contextId, status: t.status, metadata: undefined },
  });
  return out;
}

/** A task moved to `outcome`: its new status, artifact and history, and the events that tell of it. */
export function nextWire(
  task: WireTask,
  ids: { id: string; contextId: string; grantState: string | null },
  outcome: TaskOutcome,
  now: Date,
): { wire: WireTask; events: Record<string, unknown>[] } {
  const status = {
    state: wireState(outcome.state),
    message: agentMessage(ids.id, ids.contextId, outcome.text),
    timestamp: now.toISOString(),
  };
  const wire: WireTask = {
    ...task,
    status,
    artifacts: outcome.grant ? [grantArtifact(outcome.grant)] : [],
    history: [...(task.history ?? []), status.message],
  };
  const grantChanged = outcome.grant !== undefined && outcome.grant.state !== ids.grantState;
  return { wire, events: updatePayloads(toTask(wire), grantChanged).map(streamEvent) };
}

/** A new task as first stored: the agent's message and the Butler's first answer. */
export function openingWire(o: {
  taskId: string;
  contextId: string;
  message: Message;
  state: TaskStateName;
  text: string;
  grant: GrantArtifact | undefined;
  butler: ButlerMetadata;
  now: Date;
}): WireTask {
  const userMessage = Message.toJSON({ ...o.message, taskId: o.taskId, contextId: o.contextId }) as Record<
    string,
    unknown
  >;
  const status = {
    state: wireState(o.state),
    message: agentMessage(o.taskId, o.contextId, o.text),
    timestamp: o.now.toISOString(),
  };
  return {
    id: o.taskId,
    contextId: o.contextId,
    status,
    artifacts: o.grant ? [grantArtifact(o.grant)] : [],
    history: [userMessage, status.message],
    metadata: { butler: o.butler },
  };
}

/** Whether agent-written JSON carries a NUL, which the database cannot store in text. */
export const hasNul = (v: unknown): boolean => JSON.stringify(v ?? null).includes("\\u0000");

/**
 * The access request in a message's one data part: undefined when there is none, an error (with
 * what to send) when there are several or it is not an access request.
 */
export function dataInput(message: Message): Result<AccessRequestInput | undefined> {
  const dataParts = message.parts.filter((p) => p.content?.$case === "data");
  if (dataParts.length > 1) return err(`send one data part per message (this one has ${dataParts.length})`);
  const data = dataParts[0]?.content?.$case === "data" ? dataParts[0].content.value : undefined;
  if (data === undefined) return ok(undefined);
  try {
    return ok(parseInput(CreateRequestBody, data, "data"));
  } catch (e) {
    if (isAppError(e)) return err(`${e.message}; ${EXPECTED_FIELDS}`);
    throw e;
  }
}

/** What ListTasks asks for, checked. `before` is the position after which the page starts. */
export interface TaskListQuery {
  pageSize: number;
  contextId?: string;
  state?: TaskStateName;
  updatedAfter?: Date;
  before?: { updatedAt: Date; id: string };
}

/** ListTasks params as a query, or what is wrong with them (in the order they are checked). */
export function listQuery(params: ListTasksRequest): Result<TaskListQuery> {
  const pageSize = params.pageSize === undefined || params.pageSize === 0 ? 50 : params.pageSize;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100)
    return err("pageSize: must be between 1 and 100");
  const q: TaskListQuery = { pageSize };
  if (params.contextId) q.contextId = params.contextId;
  if (params.status) {
    const s = stateName(params.status);
    if (!s) return err(`status: Butler tasks are never ${taskStateToJSON(params.status)}`);
    q.state = s;
  }
  if (params.statusTimestampAfter) {
    const t = new Date(params.statusTimestampAfter);
    if (Number.isNaN(t.getTime())) return err("statusTimestampAfter: must be a timestamp");
    q.updatedAfter = t;
  }
  if (params.pageToken) {
    const m = /^(\d{1,15})\.(task_[a-z0-9]{16})$/.exec(
      Buffer.from(params.pageToken, "base64url").toString("utf8"),
    );
    if (!m) return err("pageToken: not a token this server gave out");
    q.before = { updatedAt: new Date(Number(m[1])), id: m[2]! };
  }
  return ok(q);
}

/** The page token that continues a list after `last`. */
export const pageToken = (last: { updatedAt: Date; id: string }): string =>
  Buffer.from(`${last.updatedAt.getTime()}.${last.id}`).toString("base64url");

/** A push config (token and credentials already opened) as the protocol shows it. */
export function configView(c: {
  id: string;
  taskId: string;
  url: string;
  token: string;
  authScheme: string | null;
  authCredentials: string | null;
}): TaskPushNotificationConfig {
  return {
    tenant: "",
    id: c.id.slice(c.taskId.length + 1),
    taskId: c.taskId,
    url: c.url,
    token: c.token,
    authentication: c.authScheme ? { scheme: c.authScheme, credentials: c.authCredentials ?? "" } : undefined,
  };
}

const SDK_ERRORS: Record<TaskFaultKind, new (message: string) => A2AError> = {
  not_found: TaskNotFoundError,
  malformed: RequestMalformedError,
  unsupported: UnsupportedOperationError,
  not_cancelable: TaskNotCancelableError,
};

/** The A2A error a task fault is answered with. */
export function sdkError(fault: TaskFault): A2AError {
  return new SDK_ERRORS[fault.kind](fault.message);
}
