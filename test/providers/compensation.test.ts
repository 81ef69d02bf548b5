import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import type { AgentIdentity } from "../../src/agents/token-service.js";
import type { AuditEventInput } from "../../src/audit/audit-log.js";
import type { AuditLine } from "../../src/audit/chain.js";
import type { AuthorizeResult } from "../../src/gateway/gateway-service.js";
import { createLogger } from "../../src/logger.js";
import type { BudgetDef } from "../../src/policy/types.js";
import type { Charge } from "../../src/providers/budgets.js";
import {
  createProviderGateway,
  loadProviders,
  type ProviderGatewayDeps,
} from "../../src/providers/provider-gateway.js";
import type { UpstreamAnswer } from "../../src/providers/upstream.js";
import { FakeClock } from "../helpers/clock.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const KEY = "sk_test_compensation_0001";
const BOT: AgentIdentity = { agent: "support-bot-1", project: "project-support", tokenId: "tok_1" };
const DAILY: BudgetDef = { id: "daily", agents: undefined, period: "day", currency: "EUR", limit: 10_000 };

const answer = (status: number, body: unknown = { id: "re_1", object: "refund" }): UpstreamAnswer => ({
  status,
  headers: { "content-type": "application/json" },
  body: Buffer.from(JSON.stringify(body)),
});

/**
 * The pipeline with every collaborator faked (no database): a decision that allows by a one-shot
 * approval, a budget that reserves, and counters of what was given back.
 */
async function pipeline(over: {
  credential?: ProviderGatewayDeps["credential"];
  upstream?: ProviderGatewayDeps["upstream"];
  reserve?: (
    c: Charge,
  ) => { ok: true; id: number | undefined } | { ok: false; reason: string; budget: string };
}) {
  const providers = await loadProviders(PROVIDERS_DIR);
  const seen = {
    reserved: [] as Charge[],
    released: [] as number[],
    givenBack: [] as { grantId: string; reason: string }[],
    audit: [] as AuditEventInput[],
    sent: 0,
  };
  const decision: AuthorizeResult = {
    decision: "ALLOW",
    reason: "approved once",
    event_id: "evt_decision",
    revision: 1,
    http_status: 200,
    one_shot: { grant_id: "sug_1", idempotency_key: "approved-key" },
  };
  const gw = createProviderGateway({
    providers,
    gateway: { authorize: async () => decision },
    audit: {
      append: async (e: AuditEventInput) => {
        seen.audit.push(e);
        return { event_id: `evt_${seen.audit.length}` } as AuditLine;
      },
    },
    clock: new FakeClock(),
    log: createLogger("silent"),
    credential: over.credential ?? (async () => KEY),
    baseUrls: { stripe: "http://127.0.0.1:9" },
    budgets: {
      reserve: async (_b, c) => {
        seen.reserved.push(c);
        return over.reserve ? over.reserve(c) : { ok: true, id: 41 };
      },
      release: async (id) => {
        seen.released.push(id);
      },
    },
    projectBudgets: () => [DAILY],
    butler: { submit: async () => expect.fail("nothing needs a person here") },
    oneShots: {
      release: async (_i, _c, grantId, reason) => {
        seen.givenBack.push({ grantId, reason });
      },
    },
    webhookEvents: { claim: async () => expect.fail("no webhooks here"), reacted: async () => {} },
    upstream: async (url, opts) => {
      seen.sent++;
      return over.upstream ? over.upstream(url, opts) : answer(200);
    },
  });
  const refund = () =>
    gw.call(BOT, {
      provider: "stripe",
      operation: "create_refund",
      params: { charge: "ch_1", amount: 1200 },
    });
  return { gw, seen, refund };
}

/** Each exit of a money-moving call that was approved once gives back exactly what it held. */
describe("what a provider call holds is given back once, at every exit", () => {
  test("a provider without a credential: not sent, the budget reservation is released and the approval given back", async () => {
    const { seen, refund } = await pipeline({ credential: async () => undefined });
    await expect(refund()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(seen.sent).toBe(0);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual([
      { grantId: "sug_1", reason: "the call was not sent: the provider has no credential" },
    ]);
  });
});
