import { type Task, TaskState } from "@a2a-js/sdk";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { PushReceiver } from "../fakes/push-receiver.js";
import { a2aClient, ask, grantOf, statusText, withPush } from "../helpers/a2a.js";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const HOUR = 3600_000;

/** Time passing, on a clock the test controls: requests nobody decides fail their task, and grants expire. */
describe(`A2A tasks when time runs out (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T09:00:00Z");
  const receiver = new PushReceiver();
  let s: TestServer;
  let agent: string;
  let jordan: string;

  beforeAll(async () => {
    await receiver.start();
    s = await startTestServer({ clock, env: { BUTLER_A2A_PUSH_ALLOWLIST: `127.0.0.1:${receiver.port}` } });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
    await receiver.stop();
  });

  async function open(call: { action: string; resource: string }, ttl: string): Promise<Task> {
    const denied = await s.authorize(agent, call);
    const client = await a2aClient(s.url, agent);
    return (await client.sendMessage({
      ...ask({ ttl, reason: "month-end close", denial_event_id: denied.body.event_id }),
      configuration: withPush(receiver.url),
    })) as Task;
  }

  const outboxIdle = () =>
    until(async () => {
      const r = await s.server.services.database.db.execute(
        sql`SELECT count(*)::int AS n FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL`,
      );
      return (rowsOf<{ n: number }>(r)[0]?.n ?? 1) === 0;
    }, "the outbox to be idle");

  const settle = async (what: string, check: () => boolean) =>
    until(async () => {
      await s.server.services.outbox.drain();
      return check();
    }, what);

  test("a request nobody decides expires, and its task FAILS, told by push", async () => {
    const task = await open({ action: "stripe:balance:read", resource: "stripe.com/v1/balance" }, "PT1H");
    // Deliveries still in flight when the clock jumps 25 hours would look abandoned (a claim lasts
    // 60 s of clock time) and be sent again: let the outbox finish first.
    await settle("the first pushes", () => receiver.story(task.id).length >= 2);
    await outboxIdle();
    clock.advance(25 * HOUR);
    await s.server.services.butler.sweep();
    await settle("the failure push", () => receiver.story(task.id).length >= 3);
    expect(receiver.story(task.id)).toEqual([
      "task:TASK_STATE_SUBMITTED",
      "statusUpdate:TASK_STATE_INPUT_REQUIRED",
      "statusUpdate:TASK_STATE_FAILED",
    ]);
    const t = await (await a2aClient(s.url, agent)).getTask({ tenant: "", id: task.id, historyLength: 0 });
    expect(t.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(t)).toMatch(
      /^nobody decided access request req_\w+ before it expired at 2026-05-02T09:00:00/,
    );
  });

  test("a task whose notification was given up catches up: on the sweeper's pass, and when read", async () => {
    const outbox = s.server.services.outbox;
    for (const how of ["catch-up", "read"] as const) {
      const call =
        how === "read"
          ? { action: "stripe:coupons:read", resource: "stripe.com/v1/coupons" }
          : { action: "stripe:plans:read", resource: "stripe.com/v1/plans" };
      const task = await open(call, "PT1H");
      await outboxIdle();
      await outbox.stop();
      const res = await fetch(`${s.url}/v1/access-requests/${task.metadata!.butler.request_id}/approve`, {
        method: "POST",
        headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
        body: "{}",
      });
      expect(res.status).toBe(200);
      // The agent's notification is given up, as after 12 failed attempts.
      await s.server.services.database.db.execute(
        sql`UPDATE outbox SET failed_at = now() WHERE topic = 'agent.notify' AND delivered_at IS NULL`,
      );
      outbox.start();
      const client = await a2aClient(s.url, agent);
      if (how === "catch-up") {
        // This pass, or the server's own sweeper if it came first (both run catchUp), completes it.
        await s.server.services.a2a.catchUp();
        const t = await s.server.services.database.db.execute(
          sql`SELECT state FROM a2a_tasks WHERE id = ${task.id}`,
        );
        expect(rowsOf<{ state: string }>(t)[0]?.state).toBe("completed");
      } else {
        expect((await client.getTask({ tenant: "", id: task.id, historyLength: 0 })).status?.state).toBe(
          TaskState.TASK_STATE_COMPLETED,
        );
      }
      await outboxIdle();
    }
  });

  test("a grant that runs out is reported on the completed task: artifact state expired", async () => {
    const task = await open({ action: "stripe:prices:read", resource: "stripe.com/v1/prices" }, "PT1H");
    const res = await fetch(`${s.url}/v1/access-requests/${task.metadata!.butler.request_id}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    await settle("the completion push", () => receiver.story(task.id).length >= 4);
    await outboxIdle();
    clock.advance(2 * HOUR);
    await s.server.services.butler.sweep();
    await settle("the expiry push", () => receiver.story(task.id).length >= 6);
    expect(receiver.story(task.id).slice(2)).toEqual([
      "artifactUpdate:active",
      "statusUpdate:TASK_STATE_COMPLETED",
      "artifactUpdate:expired",
      "statusUpdate:TASK_STATE_COMPLETED",
    ]);
    const t = await (await a2aClient(s.url, agent)).getTask({ tenant: "", id: task.id, historyLength: 0 });
    expect(grantOf(t)).toMatchObject({ state: "expired", action: "stripe:prices:read" });
    expect(statusText(t)).toMatch(/the grant expired at .*; calls are denied again/);
    expect(
      (await s.authorize(agent, { action: "stripe:prices:read", resource: "stripe.com/v1/prices" })).body
        .decision,
    ).toBe("DENY");
  });
});
