import { type ListTasksRequest, Message, TaskState } from "@a2a-js/sdk";
import {
  type A2AError,
  RequestMalformedError,
  TaskNotCancelableError,
  TaskNotFoundError,
  UnsupportedOperationError,
} from "@a2a-js/sdk/errors";
import { JsonRpcTransportHandler } from "@a2a-js/sdk/server";
import { describe, expect, test } from "vitest";
import {
  configView,
  dataInput,
  EXPECTED_FIELDS,
  listQuery,
  nextWire,
  openingWire,
  pageToken,
  sdkError,
  stateName,
  toTask,
  wireState,
} from "../../src/a2a/sdk-mapping.js";
import { type GrantArtifact, TaskFault, type TaskFaultKind } from "../../src/a2a/task-state.js";
import { A2A_TASK_STATES } from "../../src/db/schema.js";

/** Pure: the A2A SDK's types and the Butler's task model, both ways. No database. */

const NOW = new Date("2026-01-01T12:00:00Z");
const TASK = "task_0123456789abcdef";

const grant = (state: GrantArtifact["state"]): GrantArtifact => ({
  grant_id: "grt_0123456789abcdef",
  request_id: "req_0123456789abcdef",
  action: "stripe:charges:read",
  resource: "stripe.com/v1/charges",
  resource_pattern: null,
  branch: null,
  expires_at: "2026-01-01T13:00:00.000Z",
  revision: 3,
  state,
  revoked_at: null,
  approved_by: "alice",
  reason: null,
});

function message(parts: unknown[]): Message {
  return Message.fromJSON({ messageId: "m1", role: "ROLE_USER", parts });
}

function opened(text = "filed; asking approvers") {
  return openingWire({
    taskId: TASK,
    contextId: "ctx_1",
    message: message([{ text: "hello", mediaType: "text/plain" }]),
    state: "submitted",
    text,
    grant: undefined,
    butler: { request_id: "req_0123456789abcdef", project: "billing", agent: "bot" },
    now: NOW,
  });
}

describe("task states", () => {
  test.each(A2A_TASK_STATES.map((s) => [s]))("%s goes to the wire and back", (s) => {
    const wire = wireState(s);
    expect(wire).toMatch(/^TASK_STATE_/);
    expect(stateName(TaskState[wire as keyof typeof TaskState])).toBe(s);
  });

  test.each([
    TaskState.TASK_STATE_WORKING,
    TaskState.TASK_STATE_AUTH_REQUIRED,
    TaskState.TASK_STATE_UNSPECIFIED,
  ])("a state Butler tasks never take (%s) has no name", (s) => expect(stateName(s)).toBeUndefined());
});

describe("stored tasks", () => {
  test("the Butler's keys are snake_case inside the protocol's camelCase: metadata.butler, the grant artifact", () => {
    const { wire } = nextWire(
      opened(),
      { id: TASK, contextId: "ctx_1", grantState: null },
      {
        state: "completed",
        text: "granted",
        grant: grant("active"),
      },
      NOW,
    );
    const t = toTask(wire);
    expect(t.contextId).toBe("ctx_1");
    expect(t.metadata).toEqual({
      butler: { request_id: "req_0123456789abcdef", project: "billing", agent: "bot" },
    });
    expect(wire.artifacts).toEqual([
      {
        artifactId: "grant",
        name: "grant",
        description: "Access to stripe:charges:read on stripe.com/v1/charges: active",
        parts: [{ data: grant("active"), mediaType: "application/json" }],
      },
    ]);
    const part = t.artifacts[0]?.parts[0]?.content;
    expect(part?.$case === "data" ? part.value : undefined).toEqual(grant("active"));
  });

  test.each<[number | undefined, number]>([
    [undefined, 2],
    [0, 0],
    [-1, 0],
    [1, 1],
    [5, 2],
  ])("historyLength %s keeps %s messages", (historyLength, kept) => {
    expect(toTask(opened(), historyLength).history).toHaveLength(kept);
  });

  test("the opening holds the agent's message and the first answer, ids filled in", () => {
    const t = toTask(opened());
    expect(t.id).toBe(TASK);
    expect(t.status?.state).toBe(TaskState.TASK_STATE_SUBMITTED);
    expect(t.history.map((m) => [m.taskId, m.contextId])).toEqual([
      [TASK, "ctx_1"],
      [TASK, "ctx_1"],
    ]);
    expect(t.metadata).toEqual({
      butler: { request_id: "req_0123456789abcdef", project: "billing", agent: "bot" },
    });
  });
});

describe("nextWire: a task's change and the events that tell of it", () => {
  const ids = (grantState: string | null) => ({ id: TASK, contextId: "ctx_1", grantState });
  test.each<[string, string | null, GrantArtifact | undefined, string[]]>([
    ["no grant", null, undefined, ["statusUpdate"]],
    ["a new grant", null, grant("active"), ["artifactUpdate", "statusUpdate"]],
    ["the grant expired", "active", grant("expired"), ["artifactUpdate", "statusUpdate"]],
    ["the grant unchanged", "active", grant("active"), ["statusUpdate"]],
  ])("%s", (_, before, g, events) => {
    const state = g ? "completed" : "input_required";
    const { wire, events: out } = nextWire(opened(), ids(before), { state, text: "news", grant: g }, NOW);
    expect(out.map((e) => Object.keys(e)[0])).toEqual(events);
    const t = toTask(wire);
    expect(t.history).toHaveLength(3);
    expect(t.artifacts).toHaveLength(g ? 1 : 0);
    expect(t.status?.timestamp).toBe(NOW.toISOString());
  });
});

describe("dataInput: the access request in a message", () => {
  const data = { action: "stripe:charges:read", resource: "stripe.com/v1/charges", reason: "reconcile" };
  test("no data part: nothing asked", () => {
    expect(dataInput(message([{ text: "hi", mediaType: "text/plain" }]))).toEqual({
      ok: true,
      value: undefined,
    });
  });
  test("one data part: the request", () => {
    const r = dataInput(message([{ data, mediaType: "application/json" }]));
    expect(r).toEqual({ ok: true, value: data });
  });
  test.each<[string, unknown[], RegExp]>([
    ["two data parts", [{ data }, { data }], /^send one data part per message \(this one has 2\)$/],
    ["no reason", [{ data: { action: "a", resource: "r" } }], /data\.reason: is required/],
    ["an unknown field", [{ data: { ...data, colour: "red" } }], /unknown field 'colour'/],
  ])("%s is refused", (_, parts, why) => {
    const r = dataInput(message(parts));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
    if (!r.ok && parts.length === 1) expect(r.error.endsWith(EXPECTED_FIELDS)).toBe(true);
  });
});

describe("listQuery: ListTasks params", () => {
  const params = (over: Partial<ListTasksRequest>) => ({ tenant: "", ...over }) as ListTasksRequest;
  test.each<[string, Partial<ListTasksRequest>, string]>([
    ["page size 0 is the default", { pageSize: 0 }, "ok:50"],
    ["page size 100", { pageSize: 100 }, "ok:100"],
    ["page size 101", { pageSize: 101 }, "pageSize: must be between 1 and 100"],
    ["negative page size", { pageSize: -1 }, "pageSize: must be between 1 and 100"],
    [
      "a state Butler tasks never take",
      { status: TaskState.TASK_STATE_WORKING },
      "status: Butler tasks are never TASK_STATE_WORKING",
    ],
    ["a bad timestamp", { statusTimestampAfter: "yesterday" }, "statusTimestampAfter: must be a timestamp"],
    ["a token not ours", { pageToken: "bm90LWEtdG9rZW4" }, "pageToken: not a token this server gave out"],
    ["page size before the token", { pageSize: 500, pageToken: "x" }, "pageSize: must be between 1 and 100"],
  ])("%s", (_, over, expected) => {
    const r = listQuery(params(over));
    expect(r.ok ? `ok:${r.value.pageSize}` : r.error).toBe(expected);
  });

  test("filters are carried, and a page token leads on from where the page ended", () => {
    const last = { updatedAt: new Date("2026-01-01T10:00:00.123Z"), id: TASK };
    const r = listQuery(
      params({
        contextId: "ctx_1",
        status: TaskState.TASK_STATE_COMPLETED,
        statusTimestampAfter: "2026-01-01T00:00:00Z",
        pageToken: pageToken(last),
      }),
    );
    expect(r).toEqual({
      ok: true,
      value: {
        pageSize: 50,
        contextId: "ctx_1",
        state: "completed",
        updatedAfter: new Date("2026-01-01T00:00:00Z"),
        before: last,
      },
    });
  });
});

describe("push configs and faults", () => {
  test.each([
    [null, null, undefined],
    ["Bearer", "s3cret", { scheme: "Bearer", credentials: "s3cret" }],
    ["Basic", null, { scheme: "Basic", credentials: "" }],
  ])("a config with scheme %s shows authentication %j", (authScheme, authCredentials, authentication) => {
    const c = {
      id: `${TASK}:hook`,
      taskId: TASK,
      url: "https://agent.example/push",
      token: "t",
      authScheme,
      authCredentials,
    };
    expect(configView(c)).toEqual({
      tenant: "",
      id: "hook",
      taskId: TASK,
      url: c.url,
      token: "t",
      authentication,
    });
  });

  test.each<[TaskFaultKind, new (...a: never[]) => A2AError, number]>([
    ["not_found", TaskNotFoundError, -32001],
    ["not_cancelable", TaskNotCancelableError, -32002],
    ["unsupported", UnsupportedOperationError, -32004],
    ["malformed", RequestMalformedError, -32602],
  ])("a %s fault is answered as %o", (kind, cls, code) => {
    const e = sdkError(new TaskFault(kind, "what went wrong"));
    expect(e).toBeInstanceOf(cls);
    expect(e.message).toBe("what went wrong");
    expect(JsonRpcTransportHandler.mapToJSONRPCError(e).code).toBe(code);
  });
});
