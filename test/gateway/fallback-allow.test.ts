import { expect, test } from "vitest";
import type { AuditLine } from "../../src/audit/chain.js";
import { createGateway } from "../../src/gateway/gateway-service.js";
import { createMetrics } from "../../src/metrics.js";
import type { Decision } from "../../src/policy/index.js";
import { FakeClock } from "../helpers/clock.js";
import { index } from "../helpers/policy.js";

const POLICY =
  "project: p\nagents: [a]\nproviders: [stripe]\ngrants:\n  - service: aws\n    actions: [s3:GetObject]\n";

/** A provider's operation-group default, as call-checks.ts gives it: reads allowed, the rest denied. */
const groupDefault =
  (allowed: boolean) =>
  (d: Decision & { decision: "DENY" }): Decision =>
    allowed
      ? {
          decision: "ALLOW",
          reason: "allowed by the stripe operation group read",
          grantId: "stripe:read",
          expiresAt: undefined,
          approvedBy: undefined,
          revision: d.revision ?? 1,
        }
      : {
          decision: "DENY",
          code: "op_group_denied",
          reason: "the stripe operation group issuing.create is denied by default",
          grantId: undefined,
          revision: d.revision,
        };

function gateway() {
  const asked: string[] = [];
  const g = createGateway({
    policies: {
      index: () => index(POLICY),
      async ensureCurrent(project) {
        asked.push(project);
        return false;
      },
    },
    audit: {
      append: async () => ({ event_id: "evt_0000000000000001" }) as AuditLine,
      appendPair: () => Promise.reject(new Error("authorize writes one line at a time")),
      assertAccepting: () => {},
    },
    clock: new FakeClock(),
    metrics: createMetrics({ auditQueueDepth: () => 0 }),
    publicUrl: () => "http://butler.test",
    oneShots: { consume: () => Promise.reject(new Error("no require_approval rule here")) },
  });
  return { g, asked };
}

/**
 * An ALLOW by a provider's operation-group default is an ALLOW like a grant's: served from the
 * policy in force with no database read (a read through the proxy would otherwise pay a round trip
 * to ask for a newer revision). A denial still asks first (no stale-deny window).
 */
test("an operation-group ALLOW asks for no newer revision; an operation-group DENY still does", async () => {
  const { g, asked } = gateway();
  const read = await g.authorize(
    { agent: "a", project: "p", tokenId: "tok_x" },
    { action: "stripe:charges:read", resource: "stripe.com/v1/charges" },
    { fallback: groupDefault(true) },
  );
  expect(read).toMatchObject({ decision: "ALLOW", grant_id: "stripe:read" });
  expect(asked).toEqual([]);
  const issue = await g.authorize(
    { agent: "a", project: "p", tokenId: "tok_x" },
    { action: "stripe:issuing:cards:create", resource: "stripe.com/v1/issuing/cards" },
    { fallback: groupDefault(false) },
  );
  expect(issue).toMatchObject({ decision: "DENY", code: "op_group_denied" });
  expect(asked).toEqual(["p"]);
});
