import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { a2aClient, grantOf, misnamedKeys } from "../helpers/a2a.js";
import { atMigration, ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/**
 * Migration 0013: tasks stored while the Butler wrote camelCase keys inside A2A objects
 * (`metadata.butler.requestId`, the grant artifact's `grantId`, ...) read back, after the
 * upgrade, exactly as tasks written today: snake_case. The database is migrated up to 0012 as the
 * previous version left it, given rows in the shapes earlier versions wrote, then the real server
 * starts on it (applying the rest) and the agent reads them over A2A.
 */

const AGENT = "billing-reconciler-1";
const PROJECT = "project-billing";
const COMPLETED = "task_0000000000000001";
const REJECTED = "task_0000000000000002";
const REQUEST = "req_00000000000000aa";
const AT = "2026-05-01T10:00:00.000Z";

const agentMessage = (taskId: string, id: string, text: string) => ({
  messageId: id,
  contextId: "ctx_old",
  taskId,
  role: "ROLE_AGENT",
  parts: [{ text, mediaType: "text/plain" }],
});

/** The grant artifact as versions before migration 0012 wrote it (camelCase; its grant "live"). */
const camelArtifact = {
  artifactId: "grant",
  name: "grant",
  description: "Access to stripe:charges:read on stripe.com/v1/charges: active",
  parts: [
    {
      data: {
        grantId: REQUEST,
        requestId: REQUEST,
        action: "stripe:charges:read",
        resource: "stripe.com/v1/charges",
        branch: null,
        expiresAt: "2026-05-02T10:00:00.000Z",
        revision: 2,
        state: "live",
        revokedAt: null,
        approvedBy: "jordan",
        reason: null,
      },
      mediaType: "application/json",
    },
  ],
};

/** A task completed under the previous version, with the agent's own (camelCase) call params. */
const completedTask = {
  id: COMPLETED,
  contextId: "ctx_old",
  status: {
    state: "TASK_STATE_COMPLETED",
    message: agentMessage(COMPLETED, "msg_old_2", "granted by jordan via api; retry the call"),
    timestamp: AT,
  },
  artifacts: [camelArtifact],
  history: [
    {
      messageId: "m-agent",
      contextId: "ctx_old",
      taskId: COMPLETED,
      role: "ROLE_USER",
      parts: [
        {
          data: { reason: "payouts", ttl: "PT1H", params: { startingAfter: "ch_1", state: "live" } },
          mediaType: "application/json",
        },
      ],
    },
    agentMessage(COMPLETED, "msg_old_2", "granted by jordan via api; retry the call"),
  ],
  metadata: { butler: { requestId: REQUEST, project: PROJECT, agent: AGENT } },
};

/** A task refused by a version older still, which wrote snake_case already: left as it is. */
const rejectedTask = {
  id: REJECTED,
  contextId: "ctx_older",
  status: {
    state: "TASK_STATE_REJECTED",
    message: agentMessage(REJECTED, "msg_old_3", "no access request in this message"),
    timestamp: AT,
  },
  artifacts: [],
  history: [agentMessage(REJECTED, "msg_old_3", "no access request in this message")],
  metadata: { butler: { request_id: null, project: PROJECT, agent: AGENT } },
};

const SNAKE_GRANT = {
  grant_id: REQUEST,
  request_id: REQUEST,
  action: "stripe:charges:read",
  resource: "stripe.com/v1/charges",
  branch: null,
  expires_at: "2026-05-02T10:00:00.000Z",
  revision: 2,
  state: "active",
  revoked_at: null,
  approved_by: "jordan",
  reason: null,
};

describe(`tasks stored before the snake_case keys (${ENGINE})`, () => {
  let s: TestServer;
  let agent: string;

  beforeAll(async () => {
    s = await startTestServer({
      freshDatabase: true,
      beforeStart: (t) =>
        atMigration(t.env, "0012_grant_state_word", async (query) => {
          const insert = `INSERT INTO a2a_tasks (id, agent, project, context_id, request_id, state, grant_state, task, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $9)`;
          await query(insert, [
            COMPLETED,
            AGENT,
            PROJECT,
            "ctx_old",
            REQUEST,
            "completed",
            "active",
            JSON.stringify(completedTask),
            AT,
          ]);
          await query(insert, [
            REJECTED,
            AGENT,
            PROJECT,
            "ctx_older",
            null,
            "rejected",
            null,
            JSON.stringify(rejectedTask),
            AT,
          ]);
          // Pushes still waiting (not due during this test): the task, and its artifact's update.
          const push = `INSERT INTO outbox (topic, key, payload, next_attempt_at) VALUES ('a2a.push', $1, $2::jsonb, '2100-01-01')`;
          await query(push, [
            "a2a-push:old-task",
            JSON.stringify({
              configId: `${COMPLETED}/p`,
              taskId: COMPLETED,
              state: "completed",
              event: { task: completedTask },
            }),
          ]);
          await query(push, [
            "a2a-push:old-artifact",
            JSON.stringify({
              configId: `${COMPLETED}/p`,
              taskId: COMPLETED,
              state: "completed",
              event: {
                artifactUpdate: {
                  taskId: COMPLETED,
                  contextId: "ctx_old",
                  artifact: camelArtifact,
                  lastChunk: true,
                },
              },
            }),
          ]);
        }),
    });
    agent = await s.agentToken(AGENT, PROJECT);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  async function rpc(method: string, params: unknown): Promise<any> {
    const res = await fetch(`${s.url}/a2a`, {
      method: "POST",
      headers: { "content-type": "application/json", "a2a-version": "1.0", authorization: `Bearer ${agent}` },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { result: unknown }).result;
  }

  test("a completed task reads back with the Butler's keys in snake_case, everything else as it was", async () => {
    const got = await rpc("GetTask", { id: COMPLETED });
    expect(got.metadata).toEqual({ butler: { request_id: REQUEST, project: PROJECT, agent: AGENT } });
    expect(got.artifacts).toEqual([
      { ...camelArtifact, parts: [{ ...camelArtifact.parts[0], data: SNAKE_GRANT }] },
    ]);
    // The protocol's fields and the agent's own words are untouched.
    expect(got).toMatchObject({
      id: COMPLETED,
      contextId: "ctx_old",
      status: { state: "TASK_STATE_COMPLETED" },
    });
    expect(got.history[0].parts[0].data.params).toEqual({ startingAfter: "ch_1", state: "live" });
    expect(misnamedKeys(got)).toEqual({ butler: [], protocol: [] });
    // The SDK's client reads the grant by its new names.
    const typed = await (await a2aClient(s.url, agent)).getTask({
      tenant: "",
      id: COMPLETED,
      historyLength: 0,
    });
    expect(grantOf(typed)).toEqual(SNAKE_GRANT);
  });

  test("a task already in snake_case, and the listing, read the same as new ones", async () => {
    const got = await rpc("GetTask", { id: REJECTED });
    expect(got.metadata).toEqual({ butler: { request_id: null, project: PROJECT, agent: AGENT } });
    const listed = await rpc("ListTasks", { includeArtifacts: true });
    expect(listed.tasks.map((t: { id: string }) => t.id).sort()).toEqual([COMPLETED, REJECTED]);
    expect(misnamedKeys(listed)).toEqual({ butler: [], protocol: [] });
  });

  test("pushes waiting in the outbox carry the new keys too", async () => {
    const rows = rowsOf<{ key: string; payload: { event: Record<string, any> } }>(
      await s.server.services.database.db.execute(
        sql`SELECT key, payload FROM outbox WHERE topic = 'a2a.push' ORDER BY key`,
      ),
    );
    expect(rows.map((r) => r.key)).toEqual(["a2a-push:old-artifact", "a2a-push:old-task"]);
    const [artifact, task] = rows.map((r) => r.payload.event);
    expect(artifact!.artifactUpdate.artifact.parts[0].data).toEqual(SNAKE_GRANT);
    expect(task!.task.metadata.butler).toEqual({ request_id: REQUEST, project: PROJECT, agent: AGENT });
    expect(task!.task.artifacts[0].parts[0].data).toEqual(SNAKE_GRANT);
    expect(task!.task.history[0].parts[0].data.params).toEqual({ startingAfter: "ch_1", state: "live" });
    for (const r of rows) expect(misnamedKeys(r.payload.event)).toEqual({ butler: [], protocol: [] });
  });
});
