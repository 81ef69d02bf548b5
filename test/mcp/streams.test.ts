import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import type { AgentIdentity } from "../../src/agents/token-service.js";
import { createLogger } from "../../src/logger.js";
import { createMcpStreams } from "../../src/mcp/streams.js";

const log = createLogger("silent");
const who = (tokenId: string): AgentIdentity => ({ agent: "a", project: "p", tokenId });

/** A loopback server handing each request's response to the test. */
async function responses() {
  const waiting: ((r: { req: IncomingMessage; res: ServerResponse }) => void)[] = [];
  const server: Server = createServer((req, res) => waiting.shift()?.({ req, res }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    server,
    /** Sends a GET; resolves with the server's side of it, and a way to drop the connection. */
    async request() {
      const got = new Promise<{ req: IncomingMessage; res: ServerResponse }>((r) => waiting.push(r));
      const client = get(url);
      client.on("error", () => {});
      return { ...(await got), drop: () => client.destroy() };
    },
  };
}

describe("MCP streams", () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  });

  test("a client gone before its stream opens leaves nothing behind", async () => {
    const streams = createMcpStreams({ tokens: { authenticate: async () => who("tok_1") }, log });
    const http = await responses();
    servers.push(http.server);
    const { res, drop } = await http.request();
    const closed = new Promise((r) => res.once("close", r));
    drop();
    await closed;
    streams.open(res, who("tok_1"), "token-1", "s1");
    expect(streams.count()).toBe(0);
  });

  test("on resync and on token changes every stream's token is checked again: a revoked one ends, a valid one stays", async () => {
    const valid = new Set(["token-1", "token-2"]);
    const streams = createMcpStreams({
      tokens: {
        authenticate: async (t: string) =>
          valid.has(t) ? who(t === "token-1" ? "tok_1" : "tok_2") : undefined,
      },
      log,
    });
    const http = await responses();
    servers.push(http.server);
    const one = await http.request();
    streams.open(one.res, who("tok_1"), "token-1", "s1");
    const two = await http.request();
    streams.open(two.res, who("tok_2"), "token-2", "s2");
    await streams.settled();
    expect(streams.count()).toBe(2);
    valid.delete("token-1");
    await streams.changed({ kind: "resync" });
    expect(streams.count()).toBe(1);
    valid.delete("token-2");
    await streams.changed({ kind: "tokens" });
    expect(streams.count()).toBe(0);
  });

  test("a token revoked while its stream was being opened is caught when it opens", async () => {
    const streams = createMcpStreams({ tokens: { authenticate: async () => undefined }, log });
    const http = await responses();
    servers.push(http.server);
    const { res } = await http.request();
    streams.open(res, who("tok_1"), "token-1", "s1");
    await streams.settled();
    expect(streams.count()).toBe(0);
  });

  test("a stream whose session has ended elsewhere (or expired) ends at its next keep-alive", async () => {
    const streams = createMcpStreams({
      tokens: { authenticate: async () => who("tok_1") },
      log,
      keepAliveMs: 5,
      sessionLive: async () => false,
    });
    const http = await responses();
    servers.push(http.server);
    const { res } = await http.request();
    const ended = new Promise((r) => res.once("close", r));
    streams.open(res, who("tok_1"), "token-1", "s1");
    await ended;
    expect(streams.count()).toBe(0);
  });
});
