import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import type { AgentIdentity } from "../../src/agents/token-service.js";
import type { AuditEventInput } from "../../src/audit/audit-log.js";
import { AppError } from "../../src/errors.js";
import type { AuthorizeResult, DeferredAllow } from "../../src/gateway/gateway-service.js";
import { createLogger } from "../../src/logger.js";
import {
  createProviderGateway,
  loadProviders,
  type ProviderGatewayDeps,
} from "../../src/providers/provider-gateway.js";
import type { UpstreamAnswer } from "../../src/providers/upstream.js";
import { FakeClock } from "../helpers/clock.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const KEY = "sk_test_read_commit_0001";
const BOT: AgentIdentity = { agent: "support-bot-1", project: "project-support", tokenId: "tok_1" };
const DECISION_LINE: AuditEventInput = { type: "gateway.allowed", decision: "ALLOW" };
/** What the provider answers: data the agent may see only once the call is audited. */
const CHARGES = { object: "list", data: [{ id: "ch_private_4242", object: "charge" }] };

/**
 * A read's decision is committed together with its outcome (DeferredAllow.commit): the pipeline
 * with the gateway and the audit log faked, recording each commit as the pair of lines it wrote.
 */
async function pipeline(over: {
  credential?: ProviderGatewayDeps["credential"];
  /** The commit of the two lines fails (the database went away, the server is shutting down). */
  commitFails?: Error;
}) {
  const providers = await loadProviders(PROVIDERS_DIR);
  const seen = { commits: [] as AuditEventInput[][], appended: [] as AuditEventInput[], sent: 0 };
  const allow: DeferredAllow = {
    decision: "ALLOW",
    async commit(outcome) {
      if (over.commitFails) throw over.commitFails;
      seen.commits.push([DECISION_LINE, outcome("evt_decision")]);
      return {
        decision: "ALLOW",
        reason: "allowed by the stripe operation group read",
        event_id: "evt_decision",
        revision: 1,
        http_status: 200,
      } satisfies AuthorizeResult;
    },
  };
  const gw = createProviderGateway({
    providers,
    gateway: {
      authorize: async () => expect.fail("a read is decided with authorizeDeferred"),
      authorizeDeferred: async () => allow,
    },
    audit: {
      append: async (e) => {
        seen.appended.push(e);
        return expect.fail("a read's lines are written by its commit, not one by one");
      },
    },
    clock: new FakeClock(),
    log: createLogger("silent"),
    credential: over.credential ?? (async () => KEY),
    baseUrls: { stripe: "http://127.0.0.1:9" },
    budgets: {
      reserve: async () => expect.fail("a read reserves nothing"),
      release: async () => expect.fail("a read reserves nothing"),
    },
    projectBudgets: () => [],
    butler: { submit: async () => expect.fail("nothing needs a person here") },
    oneShots: { release: async () => expect.fail("no one-shot approval here") },
    webhookEvents: {
      claim: async () => expect.fail("no webhooks here"),
      reacted: async () => {},
      release: async () => {},
    },
    upstream: async (): Promise<UpstreamAnswer> => {
      seen.sent++;
      return {
        status: 200,
        headers: { "content-type": "application/json" },
        body: Buffer.from(JSON.stringify(CHARGES)),
      };
    },
  });
  const read = () => gw.call(BOT, { provider: "stripe", operation: "list_charges", params: { limit: 1 } });
  return { seen, read };
}

describe("a read's decision commits with its outcome, and nothing is answered before", () => {
  test("an answered read: one commit of the decision and provider.called naming it, then the provider's answer", async () => {
    const { seen, read } = await pipeline({});
    const answer = await read();
    expect(seen.sent).toBe(1);
    expect(seen.commits).toEqual([
      [
        DECISION_LINE,
        expect.objectContaining({
          type: "provider.called",
          httpStatus: 200,
          details: expect.objectContaining({
            operation: "list_charges",
            decision_event_id: "evt_decision",
            summary: { object: "list", count: 1 },
          }),
        }),
      ],
    ]);
    expect(answer).toMatchObject({ status: 200, eventId: "evt_decision" });
    expect(JSON.parse(answer.body.toString())).toEqual(CHARGES);
  });

  test("when the two lines cannot be committed, the agent gets the audit log's error and none of the provider's data", async () => {
    const down = new AppError("UNAVAILABLE", "the audit log could not be written; nothing was decided");
    const { seen, read } = await pipeline({ commitFails: down });
    const outcome = await read().then(
      (a) => ({ answered: a.body.toString() }),
      (e: unknown) => ({ error: e }),
    );
    // The read went out (a read moves nothing), but what it brought back stays in the gateway.
    expect(seen.sent).toBe(1);
    expect(outcome).toEqual({ error: down });
    expect(JSON.stringify(outcome)).not.toContain("ch_private_4242");
    expect(seen.appended).toEqual([]);
  });

  test("a read that cannot be sent (no credential) commits its decision with provider.failed, then is a 503", async () => {
    const { seen, read } = await pipeline({ credential: async () => undefined });
    await expect(read()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(seen.sent).toBe(0);
    expect(seen.commits).toEqual([
      [
        DECISION_LINE,
        expect.objectContaining({
          type: "provider.failed",
          reason: "no credential STRIPE_API_KEY",
          details: expect.objectContaining({ decision_event_id: "evt_decision" }),
        }),
      ],
    ]);
  });

  test("a read that fails unexpectedly before it is sent still records its decision, with why nothing was sent", async () => {
    const broken = new Error("the vault's connection was reset");
    const { seen, read } = await pipeline({
      credential: async () => {
        throw broken;
      },
    });
    await expect(read()).rejects.toBe(broken);
    expect(seen.sent).toBe(0);
    expect(seen.commits).toEqual([
      [
        DECISION_LINE,
        expect.objectContaining({
          type: "provider.failed",
          reason: "the call was not sent: the gateway failed before sending it",
          details: expect.objectContaining({ decision_event_id: "evt_decision" }),
        }),
      ],
    ]);
  });
});
