import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import type { AgentIdentity } from "../../src/agents/token-service.js";
import type { AuditEventInput } from "../../src/audit/audit-log.js";
import type { AuditLine } from "../../src/audit/chain.js";
import { AppError } from "../../src/errors.js";
import type { AuthorizeResult } from "../../src/gateway/gateway-service.js";
import { createLogger } from "../../src/logger.js";
import type { BudgetDef } from "../../src/policy/types.js";
import type { Charge } from "../../src/providers/budgets.js";
import {
  createProviderGateway,
  loadProviders,
  type ProviderGatewayDeps,
} from "../../src/providers/provider-gateway.js";
import { type UpstreamAnswer, UpstreamError } from "../../src/providers/upstream.js";
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
 * approval, a budget that reserves, and one log, in order, of what was given back and audited.
 */
async function pipeline(over: {
  credential?: ProviderGatewayDeps["credential"];
  upstream?: ProviderGatewayDeps["upstream"];
  reserve?: (
    c: Charge,
  ) => { ok: true; id: number | undefined } | { ok: false; reason: string; budget: string };
  /** The budget's release fails (the database went away mid-call). */
  releaseFails?: Error;
}) {
  const providers = await loadProviders(PROVIDERS_DIR);
  const seen = {
    released: [] as number[],
    givenBack: [] as { grantId: string; reason: string }[],
    audit: [] as AuditEventInput[],
    /** Everything the pipeline did after the decision, in order. */
    steps: [] as string[],
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
    gateway: {
      authorize: async () => decision,
      authorizeDeferred: async () => expect.fail("refunds are writes: decided with authorize"),
    },
    audit: {
      append: async (e: AuditEventInput) => {
        seen.audit.push(e);
        seen.steps.push(`audit ${e.type}`);
        return { event_id: `evt_${seen.audit.length}` } as AuditLine;
      },
    },
    clock: new FakeClock(),
    log: createLogger("silent"),
    credential: over.credential ?? (async () => KEY),
    baseUrls: { stripe: "http://127.0.0.1:9" },
    budgets: {
      reserve: async (_b, c) => {
        seen.steps.push("reserve");
        return over.reserve ? over.reserve(c) : { ok: true, id: 41 };
      },
      release: async (id) => {
        seen.released.push(id);
        seen.steps.push("release budget");
        if (over.releaseFails) throw over.releaseFails;
      },
    },
    projectBudgets: () => [DAILY],
    butler: { submit: async () => expect.fail("nothing needs a person here") },
    oneShots: {
      release: async (_i, _c, grantId, reason) => {
        seen.givenBack.push({ grantId, reason });
        seen.steps.push("give back approval");
      },
    },
    webhookEvents: {
      claim: async () => expect.fail("no webhooks here"),
      reacted: async () => {},
      release: async () => {},
    },
    upstream: async (url, opts) => {
      seen.sent++;
      seen.steps.push("send");
      return over.upstream ? over.upstream(url, opts) : answer(200);
    },
  });
  const refund = (amount: unknown = 1200) =>
    gw.call(BOT, { provider: "stripe", operation: "create_refund", params: { charge: "ch_1", amount } });
  return { gw, seen, refund };
}

const approval = (reason: string) => [{ grantId: "sug_1", reason }];

/**
 * Each exit of a money-moving call that was approved once gives back exactly what it held, once,
 * before the outcome's audit line: the budget when the money did not move, the approval when
 * nothing reached the provider.
 */
describe("what a provider call holds is given back once, at every exit", () => {
  test("a provider without a credential: not sent, the budget reservation is released and the approval given back", async () => {
    const { seen, refund } = await pipeline({ credential: async () => undefined });
    await expect(refund()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(seen.sent).toBe(0);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual(approval("the call was not sent: the provider has no credential"));
    expect(seen.steps).toEqual(["reserve", "release budget", "give back approval", "audit provider.failed"]);
  });

  test("a budget release that fails still gives the approval back, and the failure is not swallowed", async () => {
    const down = new Error("connection terminated");
    const { seen, refund } = await pipeline({ credential: async () => undefined, releaseFails: down });
    await expect(refund()).rejects.toBe(down);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual(approval("the call was not sent: the provider has no credential"));
  });

  /** The vault throws for a value sealed under another master key, or altered in the database. */
  test("a stored credential that does not open: not sent, the reservation and the approval are given back, the error stands", async () => {
    const sealedElsewhere = new AppError(
      "UNAVAILABLE",
      "credential STRIPE_API_KEY is stored under master key k_1, and BUTLER_MASTER_KEY is key k_2",
    );
    const { seen, refund } = await pipeline({
      credential: async () => {
        throw sealedElsewhere;
      },
    });
    await expect(refund()).rejects.toBe(sealedElsewhere);
    expect(seen.sent).toBe(0);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual(approval("the call was not sent: the gateway failed before sending it"));
  });

  test("an HTTP client that fails in an unexpected way: counted as unreachable, everything is given back once", async () => {
    const { seen, refund } = await pipeline({
      upstream: async () => {
        throw new TypeError("a bug in the HTTP client");
      },
    });
    expect((await refund()).status).toBe(502);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toHaveLength(1);
  });

  test("an unreachable provider: tried twice (the write carries a key), then everything is given back once", async () => {
    const { seen, refund } = await pipeline({
      upstream: async () => {
        throw new UpstreamError("ECONNREFUSED", "connect");
      },
    });
    const a = await refund();
    expect(a.status).toBe(502);
    expect(JSON.parse(a.body.toString()).error.code).toBe("UPSTREAM_FAILED");
    expect(seen.sent).toBe(2);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual(
      approval("could not reach stripe: ECONNREFUSED; the retry is sent with the same idempotency key"),
    );
    expect(seen.steps).toEqual([
      "reserve",
      "send",
      "send",
      "release budget",
      "give back approval",
      "audit provider.failed",
    ]);
  });

  test("a provider that does not answer in time: not retried, everything is given back once", async () => {
    const { seen, refund } = await pipeline({
      upstream: async () => {
        throw new UpstreamError("did not answer", "timeout");
      },
    });
    expect((await refund()).status).toBe(504);
    expect(seen.sent).toBe(1);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual(
      approval("stripe did not answer within 30000 ms; the retry is sent with the same idempotency key"),
    );
  });

  test("a provider that refuses (402): the money did not move, the budget is released; the approval is used", async () => {
    const { seen, refund } = await pipeline({
      upstream: async () => answer(402, { error: { type: "card_error" } }),
    });
    expect((await refund()).status).toBe(402);
    expect(seen.released).toEqual([41]);
    expect(seen.givenBack).toEqual([]);
    expect(seen.steps).toEqual(["reserve", "send", "release budget", "audit provider.called"]);
  });

  test("a provider that answers 200: the money moved and the approval is used; nothing is given back", async () => {
    const { seen, refund } = await pipeline({});
    const a = await refund();
    expect(a.status).toBe(200);
    expect(seen.released).toEqual([]);
    expect(seen.givenBack).toEqual([]);
    expect(seen.steps).toEqual(["reserve", "send", "audit provider.called"]);
  });

  test("a budget that refuses: nothing reserved, nothing sent, the approval is given back once", async () => {
    const { seen, refund } = await pipeline({
      reserve: () => ({ ok: false, reason: "daily is spent", budget: "daily" }),
    });
    const a = await refund();
    expect(a.status).toBe(403);
    expect(JSON.parse(a.body.toString()).code).toBe("budget_exceeded");
    expect(seen.sent).toBe(0);
    expect(seen.released).toEqual([]);
    expect(seen.givenBack).toEqual(
      approval("the call was refused by a budget before it was sent: daily is spent"),
    );
    expect(seen.steps).toEqual(["reserve", "give back approval", "audit budget.exceeded"]);
  });

  test("a negative amount: refused before reserving, the approval is given back once", async () => {
    const { seen, refund } = await pipeline({});
    expect((await refund(-5)).status).toBe(403);
    expect(seen.givenBack).toEqual(
      approval("the call was refused before it was sent: its amount is not a whole number"),
    );
    expect(seen.steps).toEqual(["give back approval", "audit budget.exceeded"]);
  });
});
