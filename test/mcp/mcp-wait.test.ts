import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { describe, expect, test } from "vitest";
import type { AgentIdentity } from "../../src/agents/token-service.js";
import { createLogger } from "../../src/logger.js";
import { type McpDeps, mcpServerFor } from "../../src/mcp/mcp-server.js";
import type { ProviderAnswer } from "../../src/providers/provider-gateway.js";
import { loadProviders } from "../../src/providers/provider-gateway.js";

const PROVIDERS_DIR = new URL("../../providers", import.meta.url).pathname;
const BOT: AgentIdentity = { agent: "payer", project: "p", tokenId: "tok_1" };

/** The DENY a call that needs a person gets, its one-shot request filed. */
const needsPerson: ProviderAnswer = {
  status: 403,
  contentType: "application/json",
  eventId: "evt_0000000000000001",
  body: Buffer.from(
    JSON.stringify({
      decision: "DENY",
      code: "approval_required",
      reason: "a person must approve it",
      event_id: "evt_0000000000000001",
      approval_required: { request_id: "req_0000000000000001", status: "pending" },
    }),
  ),
};

/**
 * The MCP server of one request with the pipeline and the requests faked, over the SDK's
 * in-memory transport: what a call that waits for a person does when its client cancels.
 */
describe("MCP: a call waiting for a person", () => {
  test("cancelled by its client, it is not made, even if the approval lands at that moment", async () => {
    const providers = await loadProviders(PROVIDERS_DIR);
    const calls: unknown[] = [];
    let status = "pending";
    let readAfterCancel!: () => void;
    const afterCancel = new Promise<void>((r) => (readAfterCancel = r));
    let cancelled = false;
    const deps: McpDeps = {
      providers: {
        providers: providers.providers,
        call: async (_identity, c) => {
          calls.push(c);
          return needsPerson;
        },
      },
      policies: { index: () => ({ projects: new Map() }), ensureCurrent: async () => false },
      butler: {
        submit: async () => {
          throw new Error("not asked");
        },
        getForAgent: async () => {
          if (cancelled) {
            // The person approves just as the cancellation arrives.
            status = "approved";
            readAfterCancel();
          }
          return { status } as never;
        },
      },
      log: createLogger("silent"),
      version: "test",
      approvalWaitMs: 60_000,
      approvalPollMs: 60_000,
    };
    const server = mcpServerFor(deps, BOT);
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: "t", version: "1" });
    await client.connect(clientSide);
    const abort = new AbortController();
    let progressed!: () => void;
    const waiting = new Promise<void>((r) => (progressed = r));
    const result = client
      .callTool(
        { name: "stripe_create_payment_intent", arguments: { amount: 60000, currency: "eur" } },
        undefined,
        { signal: abort.signal, onprogress: () => progressed() },
      )
      .catch((e: Error) => e);
    await waiting;
    cancelled = true;
    abort.abort();
    expect(await result).toBeInstanceOf(Error);
    await afterCancel;
    // The handler goes on from that read within the same turn of the event loop: by the next
    // turn it has either made the call again or returned without it.
    await new Promise((r) => setImmediate(r));
    // Only the first call (the one that filed the request) was made.
    expect(calls).toHaveLength(1);
    await client.close();
  });
});
