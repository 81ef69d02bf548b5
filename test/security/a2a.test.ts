import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Task, TaskState } from "@a2a-js/sdk";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readLines } from "../../src/audit/audit-log.js";
import { systemClock } from "../../src/clock.js";
import { outbox } from "../../src/db/schema.js";
import { createLogger } from "../../src/logger.js";
import { createServices, type Services } from "../../src/services.js";
import { PushReceiver } from "../fakes/push-receiver.js";
import { a2aClient, a2aKeys, ask, grantOf, misnamedKeys, withPush } from "../helpers/a2a.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { listenOn } from "../helpers/services.js";

/**
 * The A2A face, as a careless or hostile agent would use it: refused pushes, deleting twice,
 * the keys Butler writes, cancelling one of two tasks on one request, and text PostgreSQL cannot
 * store. One real instance over HTTP whose outbox runs only when told (runOnce), so every effect
 * is awaited, never polled.
 */
describe(`A2A (${ENGINE})`, () => {
  const receiver = new PushReceiver();
  const refusing = new PushReceiver();
  let t: TestDatabase;
  let dir: string;
  let services: Services;
  let app: FastifyInstance;
  let url = "";
  let agent: string;
  let jordan: string;
  let n = 0;

  beforeAll(async () => {
    await receiver.start();
    await refusing.start();
    t = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), "butler-a2a-"));
    await writeFile(join(dir, "project-billing.yaml"), seedText());
    const log = createLogger("silent");
    services = createServices({
      config: {
        audit: { batchMax: 200, queueMax: 100_000, durability: "sync" },
        policiesDir: dir,
        a2a: { pushAllowlist: [`127.0.0.1:${receiver.port}`, `127.0.0.1:${refusing.port}`] },
      },
      database: t.database,
      log,
      clock: systemClock,
      actor: "test",
      publicUrl: () => url,
    });
    await services.changes.start();
    await services.policies.importDirectory("test");
    ({ app, url } = await listenOn(services, log));
    agent = (await services.admin.createAgentToken("billing-reconciler-1", "project-billing")).token;
    jordan = (await services.approverTokens.create("jordan", "test")).token;
  });
  afterAll(async () => {
    await app?.close();
    await services?.audit.close();
    await services?.changes.stop();
    await t?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    await receiver.stop();
    await refusing.stop();
  });

  /** A minimal view of the test server for the calls below. */
  const s = {
    get url() {
      return url;
    },
    async authorize(token: string, body: unknown) {
      return http("POST", "/v1/authorize", token, body);
    },
    http: (method: string, path: string, token: string, body?: unknown) => http(method, path, token, body),
  };
  async function http(method: string, path: string, token: string, body?: unknown) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  }

  const drain = async () => {
    await services.outbox.drain();
  };

  /** A fresh denial to ask about (each test its own call). */
  async function denial(): Promise<string> {
    const r = await s.authorize(agent, {
      action: "stripe:charges:read",
      resource: `stripe.com/v1/charges/sec_${++n}`,
    });
    expect(r.body.decision).toBe("DENY");
    return r.body.event_id;
  }

  async function rpc(method: string, params: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(`${s.url}/a2a`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "a2a-version": "1.0",
        authorization: `Bearer ${agent}`,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    return { status: res.status, json: await res.json() };
  }

  async function audit(): Promise<Record<string, any>[]> {
    const lines: Record<string, any>[] = [];
    for await (const l of readLines(t.database.db)) lines.push(l);
    return lines;
  }

  test("a push the receiver refuses is audited with its reason; no delivery is marked done without its line", async () => {
    refusing.failNext = { count: 1000, status: 410 };
    const client = await a2aClient(s.url, agent);
    const task = (await client.sendMessage({
      ...ask({ ttl: "PT1H", reason: "refused pushes", denial_event_id: await denial() }),
      configuration: withPush(refusing.url, { id: "gone", returnImmediately: true }),
    })) as Task;
    await drain();
    const rows = (await t.database.db.select().from(outbox)).filter(
      (r) => r.topic === "a2a.push" && r.payload.taskId === task.id,
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const lines = (await audit()).filter((l) => l.type === "a2a.push_refused" && l.task_id === task.id);
    for (const r of rows) {
      expect(r.deliveredAt).not.toBeNull();
      expect(lines.filter((l) => l.outbox_id === Number(r.id))).toHaveLength(1);
    }
    expect(lines[0]).toMatchObject({
      config_id: `${task.id}:gone`,
      host: `127.0.0.1:${refusing.port}`,
      reason: `push receiver http://127.0.0.1:${refusing.port} answered HTTP 410`,
    });
  });

  test("deleting a push config twice succeeds (idempotent, as A2A v1.0 says); an unknown task is still -32001", async () => {
    const client = await a2aClient(s.url, agent);
    const task = (await client.sendMessage({
      ...ask({ ttl: "PT1H", reason: "delete twice", denial_event_id: await denial() }),
      configuration: withPush(receiver.url, { id: "twice" }),
    })) as Task;
    const del = { taskId: task.id, id: "twice" };
    for (let i = 0; i < 2; i++) {
      const r = await rpc("DeleteTaskPushNotificationConfig", del);
      expect(r.json).toEqual({ jsonrpc: "2.0", id: 1, result: null });
    }
    // Never existed: the same.
    expect(
      (await rpc("DeleteTaskPushNotificationConfig", { taskId: task.id, id: "never" })).json.result,
    ).toBeNull();
    expect((await rpc("GetTaskPushNotificationConfig", del)).json.error.code).toBe(-32001);
    expect(
      (await rpc("ListTaskPushNotificationConfigs", { taskId: task.id })).json.result.configs ?? [],
    ).toEqual([]);
    const unknown = await rpc("DeleteTaskPushNotificationConfig", {
      taskId: "task_0000000000000000",
      id: "x",
    });
    expect(unknown.json.error.code).toBe(-32001);
    // The SDK's client takes the answer as success too.
    await client.deleteTaskPushNotificationConfig({ tenant: "", taskId: task.id, id: "twice" });
  });

  /** Every key of a JSON value, with where it is; the agent's own message parts are its business. */
  test("Butler's own JSON inside A2A objects is snake_case, the protocol's fields camelCase: metadata, the grant artifact, status messages, pushes, filed to completed", async () => {
    const client = await a2aClient(s.url, agent);
    const sent = await rpc("SendMessage", {
      message: {
        messageId: "m-snake",
        role: "ROLE_USER",
        parts: [
          {
            data: { ttl: "PT1H", reason: "snake", denial_event_id: await denial() },
            mediaType: "application/json",
          },
        ],
      },
      configuration: { taskPushNotificationConfig: { url: receiver.url, id: "snake" } },
    });
    const task = sent.json.result.task;
    expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    expect(task.metadata).toEqual({
      butler: {
        request_id: expect.stringMatching(/^req_/),
        project: "project-billing",
        agent: "billing-reconciler-1",
      },
    });
    const requestId = task.metadata.butler.request_id as string;
    await drain();
    const waiting = await rpc("GetTask", { id: task.id });
    expect(waiting.json.result.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    const approved = await fetch(`${s.url}/v1/access-requests/${requestId}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(approved.status).toBe(200);
    await drain();
    const got = await rpc("GetTask", { id: task.id });
    expect(got.json.result.status.state).toBe("TASK_STATE_COMPLETED");
    expect(got.json.result.artifacts[0].parts[0].data).toEqual({
      grant_id: requestId,
      request_id: requestId,
      action: "stripe:charges:read",
      resource: expect.stringMatching(/^stripe\.com\/v1\/charges\/sec_/),
      branch: null,
      expires_at: expect.stringMatching(/^\d{4}-/),
      revision: expect.any(Number),
      state: "active",
      resource_pattern: null,
      revoked_at: null,
      approved_by: "jordan",
      reason: null,
    });
    const listed = await rpc("ListTasks", { includeArtifacts: true });
    // The pushes of the task's completion, queued by whichever came first: the outbox or the read.
    await drain();
    const pushes = receiver.received.map((p) => p.body).filter((b) => JSON.stringify(b).includes(task.id));
    expect(pushes.map((b) => Object.keys(b)[0])).toEqual([
      "task",
      "statusUpdate",
      "artifactUpdate",
      "statusUpdate",
    ]);
    for (const [what, v] of [
      ["SendMessage", sent.json],
      ["GetTask while waiting", waiting.json],
      ["GetTask once completed", got.json],
      ["ListTasks", listed.json],
      ["pushes", pushes],
    ] as const) {
      // Not vacuous: each answer has the Butler's keys and the protocol's, and they are told apart.
      const { butler, protocol } = a2aKeys(v);
      expect(butler).toEqual(
        expect.arrayContaining([expect.stringMatching(/\.butler\.request_id$|\.data\.grant_id$/)]),
      );
      expect(protocol).toEqual(expect.arrayContaining([expect.stringMatching(/\.(contextId|taskId)$/)]));
      expect({ what, misnamed: misnamedKeys(v) }).toEqual({ what, misnamed: { butler: [], protocol: [] } });
    }
    // The protocol's names where the Butler's data sits: the artifact, its part, the metadata.
    expect(a2aKeys(got.json).protocol).toEqual(
      expect.arrayContaining([
        ".result.contextId",
        ".result.artifacts[0].artifactId",
        ".result.artifacts[0].parts[0].mediaType",
        ".result.status.message.messageId",
        ".result.metadata",
      ]),
    );
    // The client's typed view reads the same keys.
    const typed = await client.getTask({ tenant: "", id: task.id, historyLength: 0 });
    expect(grantOf(typed)?.grant_id).toBe(requestId);
  });

  test("cancelling one of two tasks waiting on one request cancels that task only; the other still gets its grant", async () => {
    const client = await a2aClient(s.url, agent);
    const eventId = await denial();
    const first = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "twice", denial_event_id: eventId }),
    )) as Task;
    const second = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "twice", denial_event_id: eventId }),
    )) as Task;
    const requestId = first.metadata!.butler.request_id as string;
    expect(second.metadata!.butler.request_id).toBe(requestId);

    const canceled = await client.cancelTask({ tenant: "", id: first.id, metadata: undefined });
    expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    expect((await s.http("GET", `/v1/access-requests/${requestId}`, agent)).body.status).toBe("pending");
    await drain();
    expect((await client.getTask({ tenant: "", id: second.id, historyLength: 0 })).status?.state).toBe(
      TaskState.TASK_STATE_INPUT_REQUIRED,
    );
    // Cancelling it again is "already canceled", as before.
    await expect(client.cancelTask({ tenant: "", id: first.id, metadata: undefined })).rejects.toThrow(
      /already canceled/,
    );

    const approved = await fetch(`${s.url}/v1/access-requests/${requestId}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(approved.status).toBe(200);
    await drain();
    expect((await client.getTask({ tenant: "", id: second.id, historyLength: 0 })).status?.state).toBe(
      TaskState.TASK_STATE_COMPLETED,
    );
    expect((await client.getTask({ tenant: "", id: first.id, historyLength: 0 })).status?.state).toBe(
      TaskState.TASK_STATE_CANCELED,
    );
    expect(
      (await audit()).filter((l) => l.type === "access_request.canceled" && l.request_id === requestId),
    ).toEqual([]);
  });

  test("two tasks on one request cancelled at the same moment: both end canceled, the request is canceled once", async () => {
    const client = await a2aClient(s.url, agent);
    const eventId = await denial();
    const tasks = [
      (await client.sendMessage(ask({ ttl: "PT1H", reason: "race", denial_event_id: eventId }))) as Task,
      (await client.sendMessage(ask({ ttl: "PT1H", reason: "race", denial_event_id: eventId }))) as Task,
    ];
    const requestId = tasks[0]!.metadata!.butler.request_id as string;
    const results = await Promise.all(
      tasks.map((t) => client.cancelTask({ tenant: "", id: t.id, metadata: undefined })),
    );
    expect(results.map((t) => t.status?.state)).toEqual([
      TaskState.TASK_STATE_CANCELED,
      TaskState.TASK_STATE_CANCELED,
    ]);
    expect((await s.http("GET", `/v1/access-requests/${requestId}`, agent)).body.status).toBe("canceled");
    expect(
      (await audit()).filter((l) => l.type === "access_request.canceled" && l.request_id === requestId),
    ).toHaveLength(1);
  });

  test("a task opened for an identical request while the agent cancels its other task is never canceled with it", async () => {
    const client = await a2aClient(s.url, agent);
    for (let i = 0; i < 8; i++) {
      const eventId = await denial();
      const first = (await client.sendMessage(
        ask({ ttl: "PT1H", reason: `race ${i}`, denial_event_id: eventId }),
      )) as Task;
      // The second task is opened while the first is cancelled: whichever order the server takes
      // them in, the second task waits on a pending request.
      const [, second] = await Promise.all([
        client.cancelTask({ tenant: "", id: first.id, metadata: undefined }),
        client.sendMessage(
          ask({ ttl: "PT1H", reason: `race ${i}`, denial_event_id: eventId }),
        ) as Promise<Task>,
      ]);
      const now = await client.getTask({ tenant: "", id: second.id, historyLength: 0 });
      expect(now.status?.state, `round ${i}`).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
      const requestId = now.metadata!.butler.request_id as string;
      expect((await s.http("GET", `/v1/access-requests/${requestId}`, agent)).body.status).toBe("pending");
      await client.cancelTask({ tenant: "", id: second.id, metadata: undefined });
    }
  });

  test("ids and text PostgreSQL cannot store are -32602 or -32001 in every method, never -32603", async () => {
    const client = await a2aClient(s.url, agent);
    const real = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "ids", denial_event_id: await denial() }),
    )) as Task;
    const badIds = [
      "task_\u0000",
      "\u0000",
      `${real.id}\u0000`,
      "\ud800",
      "task_\ud800abcdefghijklm",
      "x".repeat(300),
    ];
    const calls: [string, (id: string) => unknown][] = [
      ["GetTask", (id) => ({ id })],
      ["CancelTask", (id) => ({ id })],
      ["SubscribeToTask", (id) => ({ id })],
      ["ListTaskPushNotificationConfigs", (id) => ({ taskId: id })],
      ["GetTaskPushNotificationConfig", (id) => ({ taskId: id, id: "c" })],
      ["DeleteTaskPushNotificationConfig", (id) => ({ taskId: id, id: "c" })],
      ["CreateTaskPushNotificationConfig", (id) => ({ taskId: id, url: receiver.url, id: "c" })],
      ["GetTaskPushNotificationConfig", (id) => ({ taskId: real.id, id })],
      ["DeleteTaskPushNotificationConfig", (id) => ({ taskId: real.id, id })],
      ["CreateTaskPushNotificationConfig", (id) => ({ taskId: real.id, url: receiver.url, id })],
      ["ListTasks", (id) => ({ contextId: id })],
      ["ListTasks", (id) => ({ pageToken: id })],
      [
        "SendMessage",
        (id) => ({ message: { messageId: "m", role: "ROLE_USER", taskId: id, parts: [{ text: "x" }] } }),
      ],
      ["SendMessage", (id) => ({ message: { messageId: id, role: "ROLE_USER", parts: [{ text: "x" }] } })],
      [
        "SendMessage",
        (id) => ({ message: { messageId: "m", contextId: id, role: "ROLE_USER", parts: [{ text: "x" }] } }),
      ],
      ["SendMessage", (id) => ({ message: { messageId: "m", role: "ROLE_USER", parts: [{ text: id }] } })],
      [
        "SendMessage",
        (id) => ({
          message: { messageId: "m", role: "ROLE_USER", parts: [{ text: "x" }], metadata: { [id]: id } },
        }),
      ],
      [
        "SendMessage",
        (id) => ({
          message: {
            messageId: "m",
            role: "ROLE_USER",
            parts: [{ data: { reason: id }, mediaType: "application/json" }],
          },
        }),
      ],
      [
        "SendMessage",
        (id) => ({
          message: { messageId: "m", role: "ROLE_USER", parts: [{ text: "x" }] },
          metadata: { k: id },
        }),
      ],
    ];
    const before = (await s.http("GET", "/v1/access-requests", jordan)).body.access_requests.length;
    for (const [method, params] of calls)
      for (const id of badIds) {
        const r = await rpc(method, params(id));
        const code = r.json.error?.code;
        expect({
          method,
          id,
          status: r.status,
          code: code === -32602 || code === -32001 || code === undefined,
        }).toEqual({ method, id, status: 200, code: true });
        if (id.includes("\u0000") || !id.isWellFormed())
          expect({ method, id, failed: r.json.error !== undefined }).toEqual({ method, id, failed: true });
      }
    // Nothing was filed by any of them.
    expect((await s.http("GET", "/v1/access-requests", jordan)).body.access_requests.length).toBe(before);
    // A well-formed id that is not a task of this agent is -32001.
    expect((await rpc("GetTask", { id: "task_0000000000000000" })).json.error.code).toBe(-32001);
    expect((await rpc("GetTask", { id: real.id })).json.result.id).toBe(real.id);
  });
});
