import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { ENGINE } from "../helpers/db.js";
import { mcpTransport } from "../helpers/mcp.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));

const SUPPORT = `project: project-support
providers: [stripe]
agents: [support-bot-1, support-bot-2]
approvers:
  - id: jordan
settings:
  approvals: { high: 1 }
`;

const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

/** MCP sessions: stored so that any instance serves them; list changes told on their streams. */
describe(`MCP sessions and list changes (${ENGINE})`, () => {
  let s: TestServer;
  let bot1: string;
  let bot2: string;
  let jordan: string;
  const clients: Client[] = [];

  beforeAll(async () => {
    s = await startTestServer({
      policies: { "project-support.yaml": SUPPORT },
      env: { PROVIDERS_DIR, STRIPE_API_KEY: "sk_test_mcp_sessions_01" },
    });
    bot1 = await s.agentToken("support-bot-1", "project-support");
    bot2 = await s.agentToken("support-bot-2", "project-support");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await s?.cleanup();
  });

  const post = (token: string, body: unknown, session?: string) =>
    fetch(`${s.url}/mcp`, {
      method: "POST",
      headers: {
        ...HEADERS,
        authorization: `Bearer ${token}`,
        ...(session ? { "mcp-session-id": session } : {}),
      },
      body: JSON.stringify(body),
    });
  const list = { jsonrpc: "2.0", id: 2, method: "tools/list", params: {} };

  /** A denied call of bot-1, asked for over REST and approved by jordan: a new revision. */
  async function grantRefunds(): Promise<void> {
    const denied = await fetch(`${s.url}/v1/providers/stripe/operations/create_refund`, {
      method: "POST",
      headers: { authorization: `Bearer ${bot1}`, "content-type": "application/json" },
      body: JSON.stringify({ params: { charge: "ch_1" } }),
    });
    const { event_id } = (await denied.json()) as { event_id: string };
    const filed = await fetch(`${s.url}/v1/access-requests`, {
      method: "POST",
      headers: { authorization: `Bearer ${bot1}`, "content-type": "application/json" },
      body: JSON.stringify({ denial_event_id: event_id, reason: "a customer was charged twice" }),
    });
    const { access_request } = (await filed.json()) as { access_request: { id: string } };
    const ok = await fetch(`${s.url}/v1/access-requests/${access_request.id}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(ok.status).toBe(200);
  }

  test("a client with a session hears tools/list_changed when a grant is approved, and lists the new access", async () => {
    const streams = s.server.services.mcpStreams;
    const opened = streams.nextOpened();
    const client = new Client({ name: "butler-test", version: "1.0.0" });
    clients.push(client);
    const changed = new Promise<void>((resolve) =>
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()),
    );
    await client.connect(mcpTransport(s.url, bot1));
    expect(client.getServerCapabilities()?.tools).toMatchObject({ listChanged: true });
    // The SDK opens the session's stream by itself once initialized.
    await opened;
    const before = (await client.listTools()).tools.find((t) => t.name === "stripe_create_refund");
    expect(before?._meta).toMatchObject({ "butler/access": "ask" });
    await grantRefunds();
    await changed;
    const after = (await client.listTools()).tools.find((t) => t.name === "stripe_create_refund");
    expect(after?._meta).toMatchObject({ "butler/access": "granted" });
  });

  test("a session is stored: initialize gives its id, DELETE ends it, and a call after the end is a 404", async () => {
    const init = await post(bot2, INIT);
    expect(init.status).toBe(200);
    const session = init.headers.get("mcp-session-id");
    expect(session).toMatch(/^mcp_[A-Za-z0-9_-]{43}$/);
    expect((await post(bot2, list, session!)).status).toBe(200);
    // Another agent's token cannot use it.
    expect((await post(bot1, list, session!)).status).toBe(404);
    const ended = await fetch(`${s.url}/mcp`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${bot2}`, "mcp-session-id": session! },
    });
    expect(ended.status).toBe(200);
    const after = await post(bot2, list, session!);
    expect(after.status).toBe(404);
    expect(await after.json()).toMatchObject({
      error: { message: expect.stringMatching(/initialize again/) },
    });
    // Without a session the endpoint still answers (stateless clients).
    expect((await post(bot2, list)).status).toBe(200);
  });

  test("a stream needs a live session of the same token; it ends when the token is revoked", async () => {
    const init = await post(bot2, INIT);
    const session = init.headers.get("mcp-session-id")!;
    const get = (token: string, sid?: string) =>
      fetch(`${s.url}/mcp`, {
        headers: {
          authorization: `Bearer ${token}`,
          accept: "text/event-stream",
          ...(sid ? { "mcp-session-id": sid } : {}),
        },
      });
    expect((await get(bot2)).status).toBe(400);
    expect((await get(bot2, "mcp_unknown")).status).toBe(404);
    // Another token's session is not a stream for this one.
    expect((await get(bot1, session)).status).toBe(404);
    // HEAD opens nothing.
    const head = await fetch(`${s.url}/mcp`, {
      method: "HEAD",
      headers: { authorization: `Bearer ${bot2}`, "mcp-session-id": session },
    });
    expect(head.status).toBe(404);
    const opened = s.server.services.mcpStreams.nextOpened();
    const stream = await get(bot2, session);
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toBe("text/event-stream");
    await opened;
    await s.server.services.admin.revokeAgentTokens({ agent: "support-bot-2", project: "project-support" });
    // The stream ends: reading it to the end finishes (no list change was sent on it).
    const text = await stream.text();
    expect(text).not.toContain("list_changed");
  });

  test("sessions that ended or expired a day ago are deleted by the sweeper's purge; others stay", async () => {
    const { deleteEndedMcpSessions, insertMcpSession, liveMcpSession } = await import(
      "../../src/mcp/session-repo.js"
    );
    const db = s.server.services.database.db;
    const day = 86_400_000;
    const now = Date.now();
    const row = (id: string, created: number, expires: number, ended?: number) =>
      insertMcpSession(db, {
        idHash: id,
        tokenId: "tok_x",
        agent: "someone-else",
        project: "project-support",
        createdAt: new Date(created),
        expiresAt: new Date(expires),
        endedAt: ended === undefined ? null : new Date(ended),
      });
    await row("purge-ended-long-ago", now - 3 * day, now + day, now - 2 * day);
    await row("purge-expired-long-ago", now - 4 * day, now - 2 * day);
    await row("purge-ended-just-now", now - day, now + day, now - 1000);
    await row("purge-live", now - 1000, now + day);
    const deleted = await deleteEndedMcpSessions(db, new Date(now - day));
    expect(deleted).toBe(2);
    expect(await liveMcpSession(db, "purge-live", new Date(now))).toBeDefined();
    const left = await s.server.services.database.db.execute(
      sql`SELECT id_hash FROM mcp_sessions WHERE id_hash LIKE 'purge-%' ORDER BY id_hash`,
    );
    expect(rowsOf<{ id_hash: string }>(left).map((r) => r.id_hash)).toEqual([
      "purge-ended-just-now",
      "purge-live",
    ]);
    expect(await s.server.services.purgeMcpSessions()).toBe(0);
  });

  test("only a well-formed initialize request opens a session; one token holds at most 100 live sessions", async () => {
    const count = async () =>
      rowsOf<{ n: number }>(
        await s.server.services.database.db.execute(
          sql`SELECT count(*)::int AS n FROM mcp_sessions WHERE agent = 'support-bot-1' AND ended_at IS NULL`,
        ),
      )[0]!.n;
    const before = await count();
    // A notification (no id), and a message that is not JSON-RPC 2.0, open nothing.
    for (const body of [
      { jsonrpc: "2.0", method: "initialize", params: INIT.params },
      { method: "initialize", id: 3, params: INIT.params },
    ]) {
      const res = await post(bot1, body);
      expect(res.status, JSON.stringify(body)).toBeLessThan(500);
      expect(res.headers.get("mcp-session-id")).toBeNull();
    }
    // An initialize the transport refuses (it cannot take SSE: 406) opens nothing either.
    const refused = await fetch(`${s.url}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        authorization: `Bearer ${bot1}`,
      },
      body: JSON.stringify(INIT),
    });
    expect(refused.status).toBe(406);
    expect(refused.headers.get("mcp-session-id")).toBeNull();
    expect(await count()).toBe(before);
    // Many at once: the limit holds (counted and inserted under the token's lock).
    const answers = await Promise.all(Array.from({ length: 110 - before }, () => post(bot1, INIT)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(100 - before);
    const over = answers.find((a) => a.status !== 200)!;
    expect(over.status).toBe(429);
    expect(await over.json()).toMatchObject({
      error: { message: expect.stringMatching(/100 open MCP sessions/) },
    });
    expect(await count()).toBe(100);
  });

  test("a session in use is renewed past half its life; an ended or expired one is not", async () => {
    const { insertMcpSession, liveMcpSession, touchMcpSession } = await import(
      "../../src/mcp/session-repo.js"
    );
    const db = s.server.services.database.db;
    const hour = 3_600_000;
    const now = Date.now();
    const row = (id: string, expires: number, ended?: number) =>
      insertMcpSession(db, {
        idHash: id,
        tokenId: "tok_y",
        agent: "someone-else",
        project: "project-support",
        createdAt: new Date(now - 20 * hour),
        expiresAt: new Date(expires),
        endedAt: ended === undefined ? null : new Date(ended),
      });
    await row("renew-old", now + 2 * hour);
    await row("renew-fresh", now + 20 * hour);
    await row("renew-ended", now + 2 * hour, now - hour);
    await row("renew-expired", now - hour);
    // What every request and every stream keep-alive of a session does (touchMcpSession).
    const touch = (id: string) => touchMcpSession(db, id, new Date(now));
    const expiry = async (id: string) => (await liveMcpSession(db, id, new Date(now)))?.expiresAt.getTime();
    expect(await touch("renew-old")).toBeDefined();
    expect(await expiry("renew-old")).toBe(now + 24 * hour);
    expect(await touch("renew-fresh")).toBeDefined();
    expect(await expiry("renew-fresh")).toBe(now + 20 * hour);
    expect(await touch("renew-ended")).toBeUndefined();
    expect(await touch("renew-expired")).toBeUndefined();
    expect(await liveMcpSession(db, "renew-expired", new Date(now))).toBeUndefined();
  });
});
