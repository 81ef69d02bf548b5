import { describe, expect, test } from "vitest";
import type { AgentIdentity } from "../../src/agents/token-service.js";
import { amountOf, findOperation, paramProblems, pathParamsOf } from "../../src/providers/call-checks.js";
import { type ProviderSpec, parseProviderFile } from "../../src/providers/spec.js";
import {
  agentKey,
  buildUpstreamRequest,
  type UpstreamRequestInput,
  writeKeyOf,
} from "../../src/providers/upstream-request.js";

/** A spec with one operation per encoding and auth scheme worth telling apart. Pure: no database. */
function spec(auth: string, encoding: "form" | "json" = "form"): ProviderSpec {
  const r = parseProviderFile({
    file: "acme.yaml",
    text: `name: acme
display_name: Acme
api_base_url: https://api.acme.test/base
auth: ${auth}
encoding: ${encoding}
op_groups:
  read: { default: allow }
  write: { default: deny }
operations:
  - name: get_thing
    op_group: read
    method: GET
    endpoint: /v1/things/{thing}
    action: acme:things:read
    resource: acme.test/things/{thing}
  - name: create_payment
    op_group: write
    method: POST
    endpoint: /v1/payments
    action: acme:payments:create
    resource: acme.test/payments
    amount: { field: amount, currency_field: currency }
    params:
      amount: { type: integer, required: true }
      currency: { type: string, required: true }
      metadata: { type: object }
`,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}

const BEARER = "{ type: bearer, credential: ACME_KEY }";
const BOT: AgentIdentity = { agent: "bot-1", project: "project-a", tokenId: "tok_1" };

function input(s: ProviderSpec, op: string, over: Partial<UpstreamRequestInput> = {}): UpstreamRequestInput {
  return {
    spec: s,
    op: s.operations.get(op)!,
    params: {},
    baseUrl: s.baseUrl,
    accept: undefined,
    idempotencyKey: undefined,
    credential: "sk_acme_0123456789",
    ...over,
  };
}

describe("the upstream request of a call (pure)", () => {
  test.each([
    {
      name: "a form write: params in a form body, the key and the credential as headers",
      given: input(spec(BEARER), "create_payment", {
        params: { amount: 1200, currency: "eur", metadata: { order: "o 1" } },
        idempotencyKey: "butler-evt_1",
      }),
      want: {
        method: "POST",
        url: "https://api.acme.test/base/v1/payments",
        body: "amount=1200&currency=eur&metadata%5Border%5D=o%201",
        headers: {
          "user-agent": "butler-gateway",
          accept: "application/json",
          "content-type": "application/x-www-form-urlencoded",
          "idempotency-key": "butler-evt_1",
          authorization: "Bearer sk_acme_0123456789",
        },
      },
    },
    {
      name: "a JSON write to an operator's base URL (trailing slash dropped), with Basic auth",
      given: input(spec("{ type: basic, credential: ACME_KEY }", "json"), "create_payment", {
        params: { amount: 5, currency: "EUR" },
        baseUrl: "http://127.0.0.1:8080/stand-in/",
      }),
      want: {
        method: "POST",
        url: "http://127.0.0.1:8080/stand-in/v1/payments",
        body: '{"amount":5,"currency":"EUR"}',
        headers: {
          "user-agent": "butler-gateway",
          accept: "application/json",
          "content-type": "application/json",
          authorization: `Basic ${Buffer.from("sk_acme_0123456789").toString("base64")}`,
        },
      },
    },
    {
      name: "a query read: the path parameter as one encoded segment, the rest in the query, no body",
      given: input(spec("{ type: header, credential: ACME_KEY, header: X-Api-Key }"), "get_thing", {
        params: { thing: "th 1", expand: "owner" },
        accept: "text/csv",
      }),
      want: {
        method: "GET",
        url: "https://api.acme.test/base/v1/things/th%201?expand=owner",
        body: undefined,
        headers: { "user-agent": "butler-gateway", accept: "text/csv", "x-api-key": "sk_acme_0123456789" },
      },
    },
  ])("$name", ({ given, want }) => {
    const r = buildUpstreamRequest(given);
    if (!r.ok) expect.fail(JSON.stringify(r.error));
    expect({ ...r.value, url: r.value.url.href }).toEqual(want);
  });

  test.each([
    {
      name: "a path parameter that is not one segment is not sent",
      over: { params: { thing: "../admin" } },
      want: { kind: "unsafe_url" },
    },
    {
      name: "a base URL that is not a URL is not sent",
      over: { params: { thing: "th_1" }, baseUrl: "not a url" },
      want: { kind: "unsafe_url", message: "the provider's base URL is not a URL" },
    },
    {
      name: "no credential on the server: not sent, naming the variable to set",
      over: { params: { thing: "th_1" }, credential: undefined },
      want: { kind: "no_credential", credential: "ACME_KEY" },
    },
    {
      name: "an empty credential counts as none",
      over: { params: { thing: "th_1" }, credential: "" },
      want: { kind: "no_credential", credential: "ACME_KEY" },
    },
    {
      name: "an unsafe URL is reported before a missing credential",
      over: { params: { thing: "a/b" }, credential: undefined },
      want: { kind: "unsafe_url" },
    },
  ])("$name", ({ over, want }) => {
    const r = buildUpstreamRequest(input(spec(BEARER), "get_thing", over));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatchObject(want);
  });

  test.each([
    {
      name: "a read carries no key",
      method: "GET" as const,
      agents: "k1",
      oneShot: "approved",
      want: undefined,
    },
    {
      name: "an approved call keeps the key it was approved with",
      method: "POST" as const,
      agents: "k1",
      oneShot: "approved",
      want: "approved",
    },
    {
      name: "else the agent's own key, namespaced to the agent",
      method: "POST" as const,
      agents: "k1",
      oneShot: null,
      want: agentKey(BOT, "k1"),
    },
    {
      name: "else one derived from the decision",
      method: "DELETE" as const,
      agents: undefined,
      oneShot: null,
      want: "butler-evt_9",
    },
  ])("the key a write is sent with: $name", ({ method, agents, oneShot, want }) => {
    const d = { event_id: "evt_9", one_shot: { idempotency_key: oneShot } };
    expect(writeKeyOf({ method }, BOT, agents, d)).toBe(want);
  });

  test("two agents sending the same key get different keys upstream", () => {
    const other = { ...BOT, agent: "bot-2" };
    expect(agentKey(BOT, "k")).toMatch(/^butler-[0-9a-f]{16}-k$/);
    expect(agentKey(BOT, "k")).not.toBe(agentKey(other, "k"));
    expect(agentKey(BOT, undefined)).toBeUndefined();
  });
});

describe("the checks of a call before it is decided (pure)", () => {
  const acme = spec(BEARER);
  const providers = new Map([["acme", acme]]);

  test.each([
    { provider: "acme", operation: "get_thing", want: { ok: true } },
    {
      provider: "nope",
      operation: "get_thing",
      want: { ok: false, error: "no provider 'nope' (known: acme)" },
    },
    {
      provider: "acme",
      operation: "nope",
      want: { ok: false, error: "provider acme has no operation 'nope' (it has get_thing, create_payment)" },
    },
  ])("finding $provider $operation", ({ provider, operation, want }) => {
    expect(findOperation(providers, provider, operation)).toMatchObject(want);
  });

  test.each([
    { params: { thing: 42 }, want: { ok: true, value: { thing: "42" } } },
    {
      params: {},
      want: {
        ok: false,
        error: { param: "thing", problem: "params.thing: is required (it is part of the path)" },
      },
    },
    { params: { thing: "%2e%2e" }, want: { ok: false, error: { param: "thing" } } },
    { params: { thing: "a\u0000b" }, want: { ok: false, error: { param: "thing" } } },
  ])("path parameters: $params", ({ params, want }) => {
    expect(pathParamsOf(acme.operations.get("get_thing")!, params)).toMatchObject(want);
  });

  test.each([
    { params: { amount: 1, currency: "EUR" }, want: [] },
    { params: { amount: "12", currency: "EUR" }, want: [] },
    { params: { currency: "EUR" }, want: ["params.amount: is required"] },
    {
      params: { amount: 1.5, currency: 7, metadata: [] },
      want: [
        "params.amount: must be an integer",
        "params.currency: must be a string",
        "params.metadata: must be a object",
      ],
    },
  ])("declared params: $params", ({ params, want }) => {
    expect(paramProblems(acme.operations.get("create_payment")!, params)).toEqual(want);
  });

  test.each([
    { params: { amount: 1200, currency: "eur" }, want: { amount: 1200, currency: "EUR" } },
    { params: { amount: "1200", currency: "EUR" }, want: { amount: 1200, currency: "EUR" } },
    { params: { amount: -5, currency: "EUR" }, want: { amount: undefined, currency: "EUR" } },
    { params: { amount: "12.5", currency: "EUR" }, want: { amount: undefined, currency: "EUR" } },
    { params: { amount: 2 ** 60, currency: "EUR" }, want: { amount: undefined, currency: "EUR" } },
  ])("the amount a call moves: $params", ({ params, want }) => {
    expect(amountOf(acme.operations.get("create_payment")!.amount!, params)).toEqual(want);
  });
});
