import { expect, test } from "vitest";
import type { AuditLine } from "../../src/audit/chain.js";
import { createGateway } from "../../src/gateway/gateway-service.js";
import { createMetrics } from "../../src/metrics.js";
import type { PolicyIndex } from "../../src/policy/index.js";
import { FakeClock } from "../helpers/clock.js";
import { index } from "../helpers/policy.js";

const BEFORE = "project: p\nagents: [a]\ngrants:\n  - service: aws\n    actions: [s3:GetObject]\n";
const AFTER = `${BEFORE}  - id: req_x\n    service: stripe\n    actions: ["charges:read"]\n    agents: ["a"]\n`;

/**
 * A grant can reach this instance while it is checking whether it is behind (the notification
 * lands during that check's query). The decision must then be made again with the new revision.
 */
test("a DENY is remade when the policy changed while the instance checked for a newer revision", async () => {
  const older = index(BEFORE);
  const newer = withRevision(index(AFTER), 2);
  let current: PolicyIndex = older;
  const audited: unknown[] = [];
  const gateway = createGateway({
    policies: {
      index: () => current,
      async ensureCurrent() {
        current = newer; // the notification arrived during the query
        return false; // and so the check itself found nothing to do
      },
    },
    audit: {
      async append(e) {
        audited.push(e);
        return { event_id: "evt_0000000000000001" } as AuditLine;
      },
      appendPair: () => Promise.reject(new Error("authorize writes one line at a time: never asked")),
      assertAccepting: () => {},
    },
    clock: new FakeClock(),
    metrics: createMetrics({ auditQueueDepth: () => 0 }),
    publicUrl: () => "http://butler.test",
    oneShots: {
      consume: () => Promise.reject(new Error("no require_approval rule here: never asked")),
    },
  });
  const r = await gateway.authorize(
    { agent: "a", project: "p", tokenId: "tok_x" },
    { action: "stripe:charges:read", resource: "x" },
  );
  expect(r).toMatchObject({ decision: "ALLOW", grant_id: "req_x", revision: 2 });
  expect(audited).toHaveLength(1);
});

function withRevision(idx: PolicyIndex, revision: number): PolicyIndex {
  return { projects: new Map([...idx.projects].map(([k, p]) => [k, { ...p, revision }])) };
}
