import { type StreamResponse, type Task, TaskState } from "@a2a-js/sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { FakeChannel } from "../fakes/fake-channel.js";
import { PushReceiver } from "../fakes/push-receiver.js";
import { a2aClient, ask, grantOf, statusText, withPush } from "../helpers/a2a.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const TREASURY = `project: treasury
agents: [treasury-bot]
approvers:
  - id: jordan
  - id: sam
settings:
  approvals: { low: 1, medium: 1, high: 2 }
`;

const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };

/** A raw JSON-RPC call, for what the SDK client would never send. */
async function rpc(
  url: string,
  token: string | undefined,
  body: string,
  headers: Record<string, string> = { "content-type": "application/json", "a2a-version": "1.0" },
) {
  const res = await fetch(`${url}/a2a`, {
    method: "POST",
    headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, type: res.headers.get("content-type") ?? "", json, text };
}

describe(`agents over A2A (${ENGINE})`, () => {
  const receiver = new PushReceiver();
  const channel = new FakeChannel("dashboard");
  let s: TestServer;
  let restarted: RunningServer | undefined;
  let url: string;
  let agent: string;
  let other: string;
  let jordan: string;

  beforeAll(async () => {
    await receiver.start();
    s = await startTestServer({
      policies: { "project-billing.yaml": seedText(), "treasury.yaml": TREASURY },
      channels: [channel],
      env: {
        BUTLER_A2A_PUSH_ALLOWLIST: `127.0.0.1:${receiver.port}`,
        // Push-config credentials are stored sealed; on PostgreSQL that needs the master key.
        BUTLER_MASTER_KEY: "42".repeat(32),
      },
    });
    url = s.url;
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    other = await s.agentToken("billing-reconciler-2", "project-billing");
    const t = await s.cli(["approvers", "token", "jordan", "--json"]);
    jordan = JSON.parse(t.stdout).token;
  });
  afterAll(async () => {
    await restarted?.close();
    await s?.cleanup();
    await receiver.stop();
  });

  async function denial(token: string, call = STRIPE): Promise<string> {
    const r = await s.authorize(token, call);
    expect(r.body.decision).toBe("DENY");
    return r.body.event_id;
  }

  async function approve(requestId: string, base = url) {
    const res = await fetch(`${base}/v1/access-requests/${requestId}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
  }

  test("the agent card names the request-access skill, streaming, push and the bearer scheme", async () => {
    const res = await fetch(`${url}/.well-known/agent-card.json`);
    expect(res.status).toBe(200);
    const card = (await res.json()) as any;
    expect(card.supportedInterfaces).toEqual([
      expect.objectContaining({ url: `${url}/a2a`, protocolBinding: "JSONRPC", protocolVersion: "1.0" }),
    ]);
    expect(card.capabilities).toMatchObject({ streaming: true, pushNotifications: true });
    expect(card.securitySchemes.bearer.httpAuthSecurityScheme.scheme).toBe("Bearer");
    expect(card.skills.map((k: { id: string }) => k.id)).toEqual(["request-access"]);
    expect(card.skills[0].examples.length).toBeGreaterThan(0);
    const etag = res.headers.get("etag")!;
    expect(
      (await fetch(`${url}/.well-known/agent-card.json`, { headers: { "if-none-match": etag } })).status,
    ).toBe(304);
  });

  test("the full loop over a stream: denied, asks, waits, is told of the grant, retries and gets through", async () => {
    const eventId = await denial(agent);
    const client = await a2aClient(url, agent);
    const events: StreamResponse[] = [];
    for await (const ev of client.sendMessageStream(
      ask({ ttl: "PT1H", reason: "reconcile yesterday's payouts", denial_event_id: eventId }),
    ))
      events.push(ev);
    expect(events.map((e) => e.payload?.$case)).toEqual(["task"]);
    const task = events[0]!.payload!.value as Task;
    expect(task.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(statusText(task)).toMatch(/^waiting for 1 approval from project-billing approvers/);
    const requestId = task.metadata?.butler?.request_id as string;
    expect((await s.http("GET", `/v1/access-requests/${requestId}`, agent)).body).toMatchObject({
      status: "pending",
      ...STRIPE,
      denial_event_id: eventId,
    });

    // The agent subscribes and waits; a person approves through the REST API.
    const seen: StreamResponse[] = [];
    const subscribed = (async () => {
      for await (const ev of client.resubscribeTask({ tenant: "", id: task.id })) seen.push(ev);
    })();
    await until(async () => seen.length > 0, "the subscription's snapshot");
    await approve(requestId);
    await subscribed;
    expect(seen.map((e) => e.payload?.$case)).toEqual(["task", "artifactUpdate", "statusUpdate"]);
    const final = seen.at(-1)!.payload!.value as { status: Task["status"] };
    expect(final.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const done = await client.getTask({ tenant: "", id: task.id, historyLength: undefined });
    expect(done.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(grantOf(done)).toMatchObject({
      grant_id: requestId,
      ...STRIPE,
      state: "active",
      expires_at: expect.stringMatching(/^\d{4}-/),
      revision: expect.any(Number),
    });
    // The retry goes through, on the revision the artifact named (or a newer one).
    const retry = await s.authorize(agent, STRIPE);
    expect(retry.body).toMatchObject({ decision: "ALLOW", grant_id: requestId });
    expect(retry.body.revision).toBeGreaterThanOrEqual(grantOf(done)!.revision as number);
    // The audit log tells it: the task, the notification that reached it.
    const audit = await s.cli(["audit", "export", "--agent", "billing-reconciler-1"]);
    const types = audit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.request_id === requestId || e.task_id === task.id)
      .map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining([
        "a2a.task_opened",
        "access_request.approved",
        "a2a.task_updated",
        "agent.notified",
      ]),
    );
  });

  test("with only a push receiver: every step arrives as a push, signed with the agent's credentials, and later revocation too", async () => {
    const eventId = await denial(agent, { action: "stripe:prices:read", resource: "stripe.com/v1/prices" });
    const client = await a2aClient(url, agent);
    const res = await client.sendMessage({
      ...ask({ ttl: "PT2H", reason: "price report", denial_event_id: eventId }),
      configuration: withPush(receiver.url, {
        id: "mine",
        token: "opaque-token",
        authentication: { scheme: "Bearer", credentials: "receiver-secret" },
        returnImmediately: true,
      }),
    });
    const task = res as Task;
    expect(task.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    await receiver.next(() => receiver.story(task.id).length >= 2, "the first pushes");
    expect(receiver.story(task.id)).toEqual([
      "task:TASK_STATE_SUBMITTED",
      "statusUpdate:TASK_STATE_INPUT_REQUIRED",
    ]);
    const first = receiver.received.find((p) => p.body.task?.id === task.id)!;
    expect(first.headers.authorization).toBe("Bearer receiver-secret");
    expect(first.headers["x-a2a-notification-token"]).toBe("opaque-token");

    await approve(task.metadata!.butler.request_id);
    await receiver.next(() => receiver.story(task.id).length >= 4, "the completion push");
    expect(receiver.story(task.id)).toEqual([
      "task:TASK_STATE_SUBMITTED",
      "statusUpdate:TASK_STATE_INPUT_REQUIRED",
      "artifactUpdate:active",
      "statusUpdate:TASK_STATE_COMPLETED",
    ]);

    const revoke = await fetch(`${url}/v1/grants/${task.metadata!.butler.request_id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "report done" }),
    });
    expect(revoke.status).toBe(200);
    await receiver.next(() => receiver.story(task.id).length >= 6, "the revocation push");
    expect(receiver.story(task.id).slice(4)).toEqual([
      "artifactUpdate:revoked",
      "statusUpdate:TASK_STATE_COMPLETED",
    ]);
    const after = await client.getTask({ tenant: "", id: task.id, historyLength: 0 });
    expect(grantOf(after)).toMatchObject({ state: "revoked", reason: "report done" });
    expect(statusText(after)).toContain("revoked");
  });

  test("a push receiver that is down gets the pushes later, in order", async () => {
    const eventId = await denial(agent, { action: "stripe:balance:read", resource: "stripe.com/v1/balance" });
    const client = await a2aClient(url, agent);
    receiver.failNext = { count: 2, status: 503 };
    const task = (await client.sendMessage({
      ...ask({ ttl: "PT1H", reason: "balance check", denial_event_id: eventId }),
      configuration: withPush(receiver.url),
    })) as Task;
    await approve(task.metadata!.butler.request_id);
    await until(
      async () => receiver.story(task.id).length >= 4,
      "the pushes after the receiver recovered",
      15_000,
    );
    expect(receiver.story(task.id)).toEqual([
      "task:TASK_STATE_SUBMITTED",
      "statusUpdate:TASK_STATE_INPUT_REQUIRED",
      "artifactUpdate:active",
      "statusUpdate:TASK_STATE_COMPLETED",
    ]);
  });

  test("an agent cannot read, list, subscribe to, cancel or configure another agent's task", async () => {
    const eventId = await denial(agent, {
      action: "stripe:disputes:read",
      resource: "stripe.com/v1/disputes",
    });
    const mine = await a2aClient(url, agent);
    const theirs = await a2aClient(url, other);
    const task = (await mine.sendMessage(
      ask({ ttl: "PT1H", reason: "dispute review", denial_event_id: eventId }),
    )) as Task;
    await expect(theirs.getTask({ tenant: "", id: task.id, historyLength: undefined })).rejects.toThrow(
      /not found/i,
    );
    await expect(theirs.cancelTask({ tenant: "", id: task.id, metadata: undefined })).rejects.toThrow(
      /not found/i,
    );
    await expect(
      (async () => {
        for await (const _ of theirs.resubscribeTask({ tenant: "", id: task.id })) void _;
      })(),
    ).rejects.toThrow(/not found/i);
    await expect(
      theirs.createTaskPushNotificationConfig({
        tenant: "",
        id: "x",
        taskId: task.id,
        url: receiver.url,
        token: "",
        authentication: undefined,
      }),
    ).rejects.toThrow(/not found/i);
    const listed = await theirs.listTasks({
      tenant: "",
      contextId: "",
      status: TaskState.TASK_STATE_UNSPECIFIED,
      pageToken: "",
      statusTimestampAfter: undefined,
    });
    expect(listed.tasks.map((t) => t.id)).not.toContain(task.id);
    const own = await mine.listTasks({
      tenant: "",
      contextId: "",
      status: TaskState.TASK_STATE_INPUT_REQUIRED,
      pageToken: "",
      statusTimestampAfter: undefined,
    });
    expect(own.tasks.map((t) => t.id)).toContain(task.id);
    expect(own.tasks.every((t) => t.status?.state === TaskState.TASK_STATE_INPUT_REQUIRED)).toBe(true);
    // Still pending: the other agent's attempts changed nothing.
    expect((await mine.getTask({ tenant: "", id: task.id, historyLength: 0 })).status?.state).toBe(
      TaskState.TASK_STATE_INPUT_REQUIRED,
    );
  });

  test("canceling the task cancels the request and updates its cards", async () => {
    const eventId = await denial(agent, {
      action: "stripe:invoices:read",
      resource: "stripe.com/v1/invoices",
    });
    const client = await a2aClient(url, agent);
    const task = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "invoice audit", denial_event_id: eventId }),
    )) as Task;
    const requestId = task.metadata!.butler.request_id as string;
    await until(async () => channel.cardOf(requestId) !== undefined, "the card");
    const canceled = await client.cancelTask({ tenant: "", id: task.id, metadata: undefined });
    expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    expect((await s.http("GET", `/v1/access-requests/${requestId}`, agent)).body.status).toBe("canceled");
    await channel.next(() => channel.cardOf(requestId)?.status === "canceled", "the card to say canceled");
    await expect(client.cancelTask({ tenant: "", id: task.id, metadata: undefined })).rejects.toThrow(
      /already canceled/,
    );
  });

  test("a request needing two people says after each approval what it still waits for", async () => {
    const bot = await s.agentToken("treasury-bot", "treasury");
    const sam = JSON.parse((await s.cli(["approvers", "token", "sam", "--json"])).stdout).token;
    const client = await a2aClient(url, bot);
    const task = (await client.sendMessage(
      ask({
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds",
        ttl: "PT1H",
        reason: "refund a duplicate charge",
      }),
    )) as Task;
    expect(statusText(task)).toMatch(/^waiting for 2 approvals from treasury approvers;/);
    const id = task.metadata!.butler.request_id as string;
    await approve(id);
    await until(
      async () =>
        statusText(await client.getTask({ tenant: "", id: task.id, historyLength: 0 })).startsWith(
          "waiting for 1 approval from treasury approvers (1 of 2 so far)",
        ),
      "the task to count jordan's approval",
    );
    const res = await fetch(`${url}/v1/access-requests/${id}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${sam}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    await until(
      async () =>
        (await client.getTask({ tenant: "", id: task.id, historyLength: 0 })).status?.state ===
        TaskState.TASK_STATE_COMPLETED,
      "the second approval to complete the task",
    );
    expect(grantOf(await client.getTask({ tenant: "", id: task.id, historyLength: 0 }))).toMatchObject({
      state: "active",
      approved_by: "jordan, sam",
    });
  });

  test("ButlerClient.withAccess: denied, asks over A2A, waits, retries, and runs the call once", async () => {
    const { ButlerClient, AccessDenied } = await import("butler-gateway/client");
    const butler = new ButlerClient({ url, token: agent });
    const coupons = { action: "stripe:coupons:read", resource: "stripe.com/v1/coupons" };
    const pendingFor = async (action: string) =>
      (
        (await s.http("GET", "/v1/access-requests?status=pending", jordan)).body.access_requests as {
          id: string;
          action: string;
        }[]
      ).find((r) => r.action === action);
    const approver = (async () => {
      await until(async () => (await pendingFor(coupons.action)) !== undefined, "the request");
      await approve((await pendingFor(coupons.action))!.id);
    })();
    const seen: string[] = [];
    let calls = 0;
    const result = await butler.withAccess(
      { ...coupons, reason: "coupon audit", ttl: "PT1H" },
      async (d) => {
        calls++;
        return d;
      },
      { onDecision: (d, attempt) => seen.push(`${attempt}:${d.decision}`) },
    );
    await approver;
    expect(calls).toBe(1);
    expect(seen).toEqual(["first:DENY", "retry:ALLOW"]);
    expect(result).toMatchObject({ decision: "ALLOW", grant_id: expect.stringMatching(/^req_/) });

    // requestAccess hands back the task's grant artifact as the Butler wrote it (snake_case).
    const sources = { action: "stripe:sources:read", resource: "stripe.com/v1/sources" };
    const sourcesApprover = (async () => {
      await until(async () => (await pendingFor(sources.action)) !== undefined, "the sources request");
      await approve((await pendingFor(sources.action))!.id);
    })();
    const outcome = await butler.requestAccess({ ...sources, reason: "sources audit", ttl: "PT1H" });
    await sourcesApprover;
    expect(outcome).toMatchObject({ granted: true, taskId: expect.stringMatching(/^task_/) });
    if (!outcome.granted) throw new Error(outcome.message);
    expect(outcome.grant).toMatchObject({
      grant_id: expect.stringMatching(/^req_/),
      request_id: outcome.grant.grant_id,
      ...sources,
      expires_at: expect.stringMatching(/^\d{4}-/),
      state: "active",
      approved_by: "jordan",
    });

    // Denied by a person: the call never runs, and the reason comes back.
    const customers = { action: "stripe:plans:read", resource: "stripe.com/v1/plans" };
    const denier = (async () => {
      await until(async () => (await pendingFor(customers.action)) !== undefined, "the second request");
      const res = await fetch(`${url}/v1/access-requests/${(await pendingFor(customers.action))!.id}/deny`, {
        method: "POST",
        headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
        body: JSON.stringify({ reason: "not this quarter" }),
      });
      expect(res.status).toBe(200);
    })();
    const refused = await butler
      .withAccess({ ...customers, reason: "plans", ttl: "PT1H" }, async () => {
        calls++;
      })
      .catch((e: unknown) => e);
    await denier;
    expect(refused).toBeInstanceOf(AccessDenied);
    expect((refused as Error).message).toContain("denied by jordan via api: not this quarter");
    expect(calls).toBe(1);
  });

  test("asking twice for the same call files one request; one approval completes both tasks", async () => {
    const call = { action: "stripe:tax_rates:read", resource: "stripe.com/v1/tax_rates" };
    const eventId = await denial(agent, call);
    const client = await a2aClient(url, agent);
    const first = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "tax", denial_event_id: eventId }),
    )) as Task;
    const second = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "tax", denial_event_id: eventId }),
    )) as Task;
    expect(second.id).not.toBe(first.id);
    const requestId = first.metadata!.butler.request_id as string;
    expect(second.metadata!.butler.request_id).toBe(requestId);
    await approve(requestId);
    for (const t of [first, second])
      await until(
        async () =>
          (await client.getTask({ tenant: "", id: t.id, historyLength: 0 })).status?.state ===
          TaskState.TASK_STATE_COMPLETED,
        `task ${t.id} to complete`,
      );
  });

  test("ListTasks pages through an agent's tasks, newest first, with a token it gave out", async () => {
    const lister = await s.agentToken("invoice-generator", "project-billing");
    const client = await a2aClient(url, lister);
    const made: string[] = [];
    for (let i = 0; i < 5; i++)
      made.push(((await client.sendMessage(ask(undefined, `hello ${i}`))) as Task).id);
    const page = (pageToken: string) =>
      client.listTasks({
        tenant: "",
        contextId: "",
        status: TaskState.TASK_STATE_UNSPECIFIED,
        pageSize: 2,
        pageToken,
        statusTimestampAfter: undefined,
      });
    const seen: string[] = [];
    const stamps: number[] = [];
    let token = "";
    let pages = 0;
    do {
      const p = await page(token);
      expect(p.totalSize).toBe(5);
      expect(p.tasks.length).toBeLessThanOrEqual(2);
      seen.push(...p.tasks.map((t) => t.id));
      stamps.push(...p.tasks.map((t) => Date.parse(t.status!.timestamp!)));
      token = p.nextPageToken;
      pages++;
    } while (token && pages < 10);
    expect(pages).toBe(3);
    // Every task once (ties within a millisecond are ordered by id, so compare as sets).
    expect(seen).toHaveLength(5);
    expect(new Set(seen)).toEqual(new Set(made));
    // Newest first, across pages.
    expect(stamps).toEqual([...stamps].sort((a, b) => b - a));
    await expect(page("bm90IG1pbmU")).rejects.toThrow(/pageToken/);
  });

  test("a denial rejects the task with the approver's reason", async () => {
    const eventId = await denial(agent, {
      action: "stripe:customers:read",
      resource: "stripe.com/v1/customers",
    });
    const client = await a2aClient(url, agent);
    const task = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "customer lookup", denial_event_id: eventId }),
    )) as Task;
    const res = await fetch(`${url}/v1/access-requests/${task.metadata!.butler.request_id}/deny`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "use the export instead" }),
    });
    expect(res.status).toBe(200);
    await until(
      async () =>
        (await client.getTask({ tenant: "", id: task.id, historyLength: 0 })).status?.state ===
        TaskState.TASK_STATE_REJECTED,
      "the rejection",
    );
    const t = await client.getTask({ tenant: "", id: task.id, historyLength: undefined });
    expect(statusText(t)).toBe("denied by jordan via api: use the export instead");
  });

  test("a message without a data part is answered with what to send; a bad data part is -32602", async () => {
    const client = await a2aClient(url, agent);
    const t = (await client.sendMessage(ask(undefined, "please let me read stripe charges"))) as Task;
    expect(t.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(t)).toContain(
      "{action, resource, branch?, resource_pattern?, ttl?, reason, denial_event_id?, params?}",
    );
    const bad = await rpc(
      url,
      agent,
      JSON.stringify({
        jsonrpc: "2.0",
        id: 7,
        method: "SendMessage",
        params: {
          message: {
            messageId: "m1",
            role: "ROLE_USER",
            parts: [
              {
                data: { action: "stripe:charges:read", ttl: true, reason: "x" },
                mediaType: "application/json",
              },
            ],
          },
        },
      }),
    );
    expect(bad.json).toMatchObject({ id: 7, error: { code: -32602 } });
    expect(bad.json.error.message).toContain("data.ttl");
    // A request the Butler refuses (too long a TTL) ends the task REJECTED, saying why.
    const eventId = await denial(agent, {
      action: "stripe:products:read",
      resource: "stripe.com/v1/products",
    });
    const long = (await client.sendMessage(
      ask({ ttl: "P30D", reason: "forever", denial_event_id: eventId }),
    )) as Task;
    expect(long.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(long)).toMatch(/longer than the maximum grant TTL/);
  });

  test("a message the Butler cannot store, or a bad push config, files nothing", async () => {
    const before = (await s.http("GET", "/v1/access-requests", jordan)).body.access_requests.length;
    const eventId = await denial(agent, { action: "stripe:files:read", resource: "stripe.com/v1/files" });
    const client = await a2aClient(url, agent);
    await expect(
      client.sendMessage(ask({ ttl: "PT1H", reason: "files", denial_event_id: eventId }, "nul \u0000 here")),
    ).rejects.toThrow(/NUL/);
    await expect(
      client.sendMessage({
        ...ask({ ttl: "PT1H", reason: "files", denial_event_id: eventId }),
        configuration: withPush(receiver.url, { authentication: { scheme: "a b", credentials: "x" } }),
      }),
    ).rejects.toThrow(/authentication scheme/);
    expect((await s.http("GET", "/v1/access-requests", jordan)).body.access_requests.length).toBe(before);
    // At most five receivers per task.
    const task = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "files", denial_event_id: eventId }),
    )) as Task;
    for (let i = 0; i < 5; i++)
      await client.createTaskPushNotificationConfig({
        tenant: "",
        id: `r${i}`,
        taskId: task.id,
        url: receiver.url,
        token: "",
        authentication: undefined,
      });
    await expect(
      client.createTaskPushNotificationConfig({
        tenant: "",
        id: "r5",
        taskId: task.id,
        url: receiver.url,
        token: "",
        authentication: undefined,
      }),
    ).rejects.toThrow(/already has 5 push notification configs/);
  });

  test("ButlerClient sends its token only to the Butler it was given, and refuses a card naming another host", async () => {
    const { ButlerClient, ButlerError } = await import("butler-gateway/client");
    const sentTo: string[] = [];
    const tracking =
      (doctor: boolean): typeof fetch =>
      async (input, init) => {
        const target = String(input instanceof Request ? input.url : input);
        if (new Headers(init?.headers).has("authorization")) sentTo.push(new URL(target).origin);
        const res = await fetch(input, init);
        if (!doctor || !target.endsWith("/.well-known/agent-card.json")) return res;
        const card = (await res.json()) as { supportedInterfaces: { url: string }[] };
        card.supportedInterfaces[0]!.url = "http://elsewhere.example/a2a";
        return new Response(JSON.stringify(card), { headers: { "content-type": "application/json" } });
      };
    // With the real card, A2A calls carry the token, to this Butler only.
    const honest = new ButlerClient({ url, token: agent, fetch: tracking(false) });
    await (await honest.a2a()).listTasks({
      tenant: "",
      contextId: "",
      status: TaskState.TASK_STATE_UNSPECIFIED,
      pageToken: "",
      statusTimestampAfter: undefined,
    });
    expect(sentTo).toEqual([new URL(url).origin]);
    sentTo.length = 0;
    const butler = new ButlerClient({ url, token: agent, fetch: tracking(true) });
    const err = await butler
      .requestAccess({ reason: "x", action: "stripe:files:read", resource: "stripe.com/v1/files" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ButlerError);
    expect((err as Error).message).toContain("names http://elsewhere.example/a2a");
    expect(sentTo).toEqual([]);
  });

  test("malformed JSON-RPC, unknown methods, a missing version, a wrong content type and oversized bodies get the spec's codes", async () => {
    expect((await rpc(url, agent, "{not json")).json.error.code).toBe(-32700);
    expect((await rpc(url, agent, JSON.stringify({ id: 1, method: "GetTask" }))).json.error.code).toBe(
      -32600,
    );
    expect((await rpc(url, agent, "[]")).json.error.code).toBe(-32600);
    const unknown = await rpc(
      url,
      agent,
      JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tasks/steal", params: {} }),
    );
    expect(unknown.json).toMatchObject({ id: 2, error: { code: -32601 } });
    const noVersion = await rpc(
      url,
      agent,
      JSON.stringify({ jsonrpc: "2.0", id: 3, method: "GetTask", params: { id: "x" } }),
      {
        "content-type": "application/json",
      },
    );
    expect(noVersion.json).toMatchObject({ id: 3, error: { code: -32009 } });
    const wrongType = await rpc(url, agent, "jsonrpc=2.0", {
      "content-type": "application/x-www-form-urlencoded",
      "a2a-version": "1.0",
    });
    expect(wrongType.json.error.code).toBe(-32005);
    const huge = await rpc(
      url,
      agent,
      JSON.stringify({ jsonrpc: "2.0", id: 4, method: "SendMessage", params: { pad: "x".repeat(70_000) } }),
    );
    expect(huge.status).toBe(413);
    expect(huge.json.error.code).toBe(-32600);
    const missing = await rpc(
      url,
      agent,
      JSON.stringify({ jsonrpc: "2.0", id: 5, method: "GetTask", params: { id: "task_nope" } }),
    );
    expect(missing.json).toMatchObject({ id: 5, error: { code: -32001 } });
    const noToken = await rpc(
      url,
      undefined,
      JSON.stringify({ jsonrpc: "2.0", id: 6, method: "GetTask", params: { id: "x" } }),
    );
    expect(noToken.status).toBe(401);
    // Subscribing to a finished task is a plain error answer, not an event stream.
    const client = await a2aClient(url, agent);
    const done = (await client.sendMessage(ask(undefined, "hello"))) as Task;
    const sub = await rpc(
      url,
      agent,
      JSON.stringify({ jsonrpc: "2.0", id: 8, method: "SubscribeToTask", params: { id: done.id } }),
    );
    expect(sub.type).toContain("application/json");
    expect(sub.json).toMatchObject({ id: 8, error: { code: -32004 } });
    // Params of the wrong shape are the caller's error, never the server's.
    for (const params of [{ message: 5 }, { message: { parts: "x" } }, { message: { parts: [5, null] } }]) {
      const r = await rpc(
        url,
        agent,
        JSON.stringify({ jsonrpc: "2.0", id: 9, method: "SendMessage", params }),
      );
      expect(r.status).toBeLessThan(500);
      expect(r.json.error?.code ?? 0).not.toBe(-32603);
    }
  });

  test("push URLs at loopback, metadata or private addresses are refused unless allowlisted", async () => {
    const eventId = await denial(agent, { action: "stripe:refunds:read", resource: "stripe.com/v1/refunds" });
    const client = await a2aClient(url, agent);
    const task = (await client.sendMessage(
      ask({ ttl: "PT1H", reason: "refund report", denial_event_id: eventId }),
    )) as Task;
    for (const target of [
      "http://169.254.169.254/latest/meta-data/",
      "https://169.254.169.254/latest/meta-data/",
      `http://127.0.0.1:${receiver.port + 1}/`,
      "https://127.0.0.1/",
      "https://[::1]/",
      "https://[::ffff:127.0.0.1]/",
      "https://10.0.0.8/hook",
      "https://localhost/hook",
      "ftp://example.com/",
    ]) {
      await expect(
        client.createTaskPushNotificationConfig({
          tenant: "",
          id: "x",
          taskId: task.id,
          url: target,
          token: "",
          authentication: undefined,
        }),
        target,
      ).rejects.toThrow(/push notification url/);
    }
    const ok = await client.createTaskPushNotificationConfig({
      tenant: "",
      id: "allowed",
      taskId: task.id,
      url: receiver.url,
      token: "",
      authentication: undefined,
    });
    expect(ok).toMatchObject({ id: "allowed", taskId: task.id, url: receiver.url });
    const listed = await client.listTaskPushNotificationConfig({
      tenant: "",
      taskId: task.id,
      pageSize: 0,
      pageToken: "",
    });
    expect(listed.configs.map((c) => c.url)).toEqual([receiver.url]);
    // Refused on SendMessage too, before any request is filed.
    const before = (await s.http("GET", "/v1/access-requests", jordan)).body.access_requests.length;
    await expect(
      client.sendMessage({
        ...ask({ ttl: "PT1H", reason: "x", denial_event_id: eventId }),
        configuration: withPush("http://169.254.169.254/"),
      }),
    ).rejects.toThrow(/internal address|https/);
    expect((await s.http("GET", "/v1/access-requests", jordan)).body.access_requests.length).toBe(before);
  });

  test("after a restart, approving a waiting task still completes it and pushes", async () => {
    const eventId = await denial(agent, { action: "stripe:events:read", resource: "stripe.com/v1/events" });
    const client = await a2aClient(url, agent);
    const task = (await client.sendMessage({
      ...ask({ ttl: "PT1H", reason: "event replay", denial_event_id: eventId }),
      configuration: withPush(receiver.url),
    })) as Task;
    await receiver.next(() => receiver.story(task.id).length === 2, "the first pushes");
    // An agent still subscribed does not hold up the shutdown; its stream just ends.
    const listening = (async () => {
      for await (const _ of client.resubscribeTask({ tenant: "", id: task.id })) void _;
    })().catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    await s.stop();
    await listening;
    restarted = await startServer(loadConfig(s.env), createLogger("silent"), undefined, {
      channels: [channel],
    });
    const base = restarted.url;
    await approve(task.metadata!.butler.request_id, base);
    await receiver.next(() => receiver.story(task.id).length >= 4, "the completion push after the restart");
    expect(receiver.story(task.id).slice(2)).toEqual([
      "artifactUpdate:active",
      "statusUpdate:TASK_STATE_COMPLETED",
    ]);
    const again = await a2aClient(base, agent);
    const t = await again.getTask({ tenant: "", id: task.id, historyLength: 0 });
    expect(t.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(grantOf(t)).toMatchObject({
      state: "active",
      action: "stripe:events:read",
      resource: "stripe.com/v1/events",
    });
  });
});
