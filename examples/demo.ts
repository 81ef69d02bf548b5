/**
 * `npm run demo`: the seed scenario end to end on the embedded default (PGlite in a temporary
 * directory; no Slack, Telegram or network). billing-reconciler-1 is denied Stripe, asks over
 * A2A, jordan approves through the REST API, the agent is told over A2A, retries, and reads
 * charges through the gateway's Stripe proxy from a local stand-in Stripe (the key stays with Butler). Then the session's audit lines and the chain check.
 */
import { reconcile } from "./billing-agent.js";
import { agentSays, approverSays, butlerSays, paint, startDemo } from "./demo-setup.js";

const demo = await startDemo("butler-demo-");
const { dir, stripe, stripeKey, server } = demo;
const started = Date.now();
let exitCode = 0;
try {
  const { admin } = server.services;
  butlerSays(
    `listening on ${server.url} (embedded PGlite in ${dir}); agent card at ${server.url}/.well-known/agent-card.json`,
  );
  const { token } = await admin.createAgentToken("billing-reconciler-1", "project-billing");
  const jordan = (await admin.createApproverToken("jordan")).token;

  // The scripted approver: watches the pending list the way the dashboard does, and approves.
  const approver = (async () => {
    for (;;) {
      const res = await fetch(`${server.url}/v1/access-requests?status=pending`, {
        headers: { authorization: `Bearer ${jordan}` },
      });
      const { access_requests: pending } = (await res.json()) as {
        access_requests: {
          id: string;
          action: string;
          resource: string;
          reason: string;
          proposal: { diff: string };
        }[];
      };
      const r = pending[0];
      if (r) {
        approverSays(`sees ${r.id}: ${r.action} on ${r.resource}, "${r.reason}" (written by the agent)`);
        for (const l of r.proposal.diff.split("\n").filter((l) => /^\+(?!\+\+)/.test(l)))
          approverSays(`  ${paint(32, l)}`);
        const ok = await fetch(`${server.url}/v1/access-requests/${r.id}/approve`, {
          method: "POST",
          headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
          body: "{}",
        });
        approverSays(`approves through the REST API: HTTP ${ok.status}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  const charges = await reconcile({
    butlerUrl: server.url,
    token,
    say: agentSays,
  });
  await approver;
  agentSays(
    `read ${charges.length} charges from Stripe through the gateway: ${charges.map((c) => `${c.id} (${c.amount})`).join(", ")}`,
  );
  butlerSays(
    `the stand-in Stripe saw Butler's key on ${stripe.requests.length} request(s), never the agent's token: ${stripe.requests.every((r) => r.headers.authorization === `Bearer ${stripeKey}`)}`,
  );

  // The A2A notification is audited when the outbox has delivered it.
  for (let i = 0; i < 200; i++) {
    const lines = [];
    for await (const l of admin.exportAudit({})) lines.push(l);
    if (lines.some((l) => l.type === "agent.notified")) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  console.log(`\n${paint(1, "The session's audit log (JSONL):")}`);
  for await (const l of admin.exportAudit({})) console.log(JSON.stringify(l));
  const v = await admin.verifyAudit();
  console.log(
    `\n${paint(1, "Chain verification:")} ${v.ok ? paint(32, `verified, ${v.count} events through seq ${v.verifiedThrough}`) : paint(31, `BROKEN at seq ${v.break?.seq}`)}`,
  );
  if (!v.ok) exitCode = 1;
  console.log(`Done in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  await demo.close();
}
process.exit(exitCode);
