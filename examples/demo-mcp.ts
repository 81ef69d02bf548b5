/**
 * `npm run demo:mcp`: the seed scenario told through MCP, on the embedded default (PGlite in a
 * temporary directory; no network). billing-reconciler-1 connects to Butler's /mcp with the
 * SDK's own client, lists its tools, calls stripe_list_charges and is denied, asks for access
 * with butler_request_access, jordan (a scripted approver) approves through the REST API, and the
 * same call goes through to a local stand-in Stripe (the key stays with Butler). Then the
 * session's audit lines and the chain check. Exits 0 when every step did what it should.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { agentSays, approverSays, butlerSays, paint, startDemo } from "./demo-setup.js";

/** A step that did not do what the scenario needs: the demo stops and exits 1. */
function expectThat(ok: boolean, what: string): void {
  if (!ok) throw new Error(`demo step failed: ${what}`);
}

const textOf = (r: CallToolResult) =>
  (r.content as { type: string; text?: string }[]).map((c) => c.text ?? "").join("\n");

const demo = await startDemo("butler-demo-mcp-");
const { dir, stripe, stripeKey, server } = demo;
const started = Date.now();
let exitCode = 0;
const client = new Client({ name: "billing-reconciler", version: "1.0.0" });
try {
  const { admin } = server.services;
  butlerSays(`listening on ${server.url}; MCP at ${server.url}/mcp (embedded PGlite in ${dir})`);
  const { token } = await admin.createAgentToken("billing-reconciler-1", "project-billing");
  const jordan = (await admin.createApproverToken("jordan")).token;

  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  const { tools } = await client.listTools();
  const list = tools.find((t) => t.name === "stripe_list_charges");
  agentSays(`tools/list: ${tools.length} tools; stripe_list_charges is "${list?._meta?.["butler/access"]}"`);
  expectThat(
    list?._meta?.["butler/access"] === "ask",
    "stripe_list_charges is listed as something to ask for",
  );

  const first = (await client.callTool({
    name: "stripe_list_charges",
    arguments: { limit: 3 },
  })) as CallToolResult;
  expectThat(first.isError === true, "the first call is denied");
  const denial = first.structuredContent as { event_id: string; reason: string };
  agentSays(`stripe_list_charges → denied: ${denial.reason}`);

  const asked = (await client.callTool({
    name: "butler_request_access",
    arguments: {
      denial_event_id: denial.event_id,
      reason: "monthly reconciliation: compare Stripe charges with the ledger",
    },
  })) as CallToolResult;
  expectThat(!asked.isError, `the request is filed (${textOf(asked)})`);
  const filed = asked.structuredContent as {
    access_request: { id: string; action: string; resource: string; proposal: { diff: string } };
  };
  agentSays(`butler_request_access → ${filed.access_request.id}, pending a person`);

  // The scripted approver: reads the request as the dashboard shows it, and approves.
  const seen = await fetch(`${server.url}/v1/access-requests/${filed.access_request.id}`, {
    headers: { authorization: `Bearer ${jordan}` },
  });
  const request = (await seen.json()) as { action: string; resource: string; proposal: { diff: string } };
  approverSays(`sees ${filed.access_request.id}: ${request.action} on ${request.resource}`);
  for (const l of request.proposal.diff.split("\n").filter((l) => /^\+(?!\+\+)/.test(l)))
    approverSays(`  ${paint(32, l)}`);
  const approved = await fetch(`${server.url}/v1/access-requests/${filed.access_request.id}/approve`, {
    method: "POST",
    headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
    body: "{}",
  });
  approverSays(`approves through the REST API: HTTP ${approved.status}`);
  expectThat(approved.status === 200, "the approval is taken");

  const retried = (await client.callTool({
    name: "stripe_list_charges",
    arguments: { limit: 3 },
  })) as CallToolResult;
  expectThat(
    !retried.isError,
    `the same call goes through after approval (${textOf(retried).slice(0, 200)})`,
  );
  const charges = (retried.structuredContent as { data: { id: string; amount: number }[] }).data;
  agentSays(`stripe_list_charges → ${charges.map((c) => `${c.id} (${c.amount})`).join(", ")}`);
  const keyOnly = stripe.requests.every((r) => r.headers.authorization === `Bearer ${stripeKey}`);
  butlerSays(
    `the stand-in Stripe saw Butler's key on ${stripe.requests.length} request(s), never the agent's token: ${keyOnly}`,
  );
  expectThat(
    keyOnly && stripe.requests.length === 1,
    "only the allowed call reached Stripe, with Butler's key",
  );

  console.log(`\n${paint(1, "The session's audit log (JSONL):")}`);
  for await (const l of admin.exportAudit({})) console.log(JSON.stringify(l));
  const v = await admin.verifyAudit();
  console.log(
    `\n${paint(1, "Chain verification:")} ${v.ok ? paint(32, `verified, ${v.count} events through seq ${v.verifiedThrough}`) : paint(31, `BROKEN at seq ${v.break?.seq}`)}`,
  );
  expectThat(v.ok, "the chain verifies");
  console.log(`Done in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await client.close();
  await demo.close();
}
process.exit(exitCode);
