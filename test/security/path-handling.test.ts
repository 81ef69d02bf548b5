import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStandInStripe } from "../../examples/stand-in-stripe.js";
import { parseProviderFile } from "../../src/providers/spec.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const STRIPE_KEY = "sk_test_butler_only_4242";
const WISE_TOKEN = "wise-token-never-for-stripe-paths";

/** A provider whose policy resource holds a (non-path) param: it is held to the same rule. */
const ACME = `name: acme
display_name: Acme
api_base_url: https://api.acme.test
auth: { type: bearer, credential: ACME_KEY }
op_groups: { read: { default: allow } }
operations:
  - name: list_items
    op_group: read
    method: GET
    endpoint: /accounts/{account}/items
    resource: acme.com/accounts/{account}/items/{kind}
    params:
      kind: { type: string, required: true }
  - name: get_item
    op_group: read
    method: GET
    endpoint: /items/{item}
    resource: acme.com/items/{item}
    approval: each_call
`;

const SUPPORT = `project: project-support
providers: [stripe, wise, acme]
agents:
  - name: support-bot-2
    roles: [support-tier-2]
approvers:
  - id: jordan
`;

/**
 * Path handling, as an attacker would try it: dot segments and separators in provider path
 * parameters (the proxy's path and the operations API's params), in every encoding, and an
 * agent-chosen provider segment. Nothing of it may change the path sent upstream, reach another
 * provider's credential, or write agent text into the audit line's action or resource.
 */
describe(`path parameters cannot change the upstream path (${ENGINE})`, () => {
  let stripe: Awaited<ReturnType<typeof startStandInStripe>>;
  let s: TestServer;
  let agent: string;
  let providersDir: string;

  beforeAll(async () => {
    stripe = await startStandInStripe(STRIPE_KEY);
    providersDir = await mkdtemp(join(tmpdir(), "butler-providers-"));
    for (const f of ["stripe.yaml", "wise.yaml"])
      await copyFile(join(PROVIDERS_DIR, f), join(providersDir, f));
    await writeFile(join(providersDir, "acme.yaml"), ACME);
    s = await startTestServer({
      policies: { "project-support.yaml": SUPPORT },
      env: {
        PROVIDERS_DIR: providersDir,
        // Wise is served under /wise of the same stand-in, so its calls are recorded too.
        BUTLER_PROVIDER_URLS: `stripe=${stripe.url},wise=${stripe.url}/wise,acme=${stripe.url}/acme`,
        ACME_KEY: "acme-key",
        BUTLER_PROVIDER_PORTS: "stripe=0",
        STRIPE_API_KEY: STRIPE_KEY,
        WISE_API_TOKEN: WISE_TOKEN,
      },
    });
    agent = await s.agentToken("support-bot-2", "project-support");
  });
  afterAll(async () => {
    await s?.cleanup();
    await stripe?.close();
    if (providersDir) await rm(providersDir, { recursive: true, force: true });
  });

  /** A request with the path exactly as written: no client-side dot-segment removal (fetch would). */
  function raw(base: string, method: string, path: string): Promise<{ status: number; body: any }> {
    const u = new URL(base);
    return new Promise((resolve, reject) => {
      const r = request(
        {
          host: u.hostname,
          port: u.port,
          method,
          path,
          headers: { authorization: `Bearer ${agent}` },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c) => {
            text += c;
          });
          res.on("end", () => {
            let body: unknown = text;
            try {
              body = JSON.parse(text);
            } catch {
              /* keep the text */
            }
            resolve({ status: res.statusCode ?? 0, body });
          });
        },
      );
      r.on("error", reject);
      r.end();
    });
  }

  async function operation(provider: string, op: string, params: Record<string, unknown>) {
    return s.http("POST", `/v1/providers/${provider}/operations/${op}`, agent, { params });
  }

  async function auditLines(): Promise<Record<string, any>[]> {
    const out = (await s.cli(["audit", "export"])).stdout.trim();
    return out ? out.split("\n").map((l) => JSON.parse(l)) : [];
  }

  // Each of these names the charge "." or "..", or smuggles a separator, once decoded by someone.
  const PROXY_CHARGES = [
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%252e",
    "%252e%252e",
    "%25252e%25252E",
    "..%3b",
    "..;",
    "%2e%2e;x",
    ";x",
    "a%2f..",
    "a%2F..%2F..",
    "%252f",
    "..%5c",
    "a%5cb",
    "%00",
    "ch_1%00",
    "%0a",
    "ch%09x",
    "%7f",
    "%c2%85",
    "%ef%bc%8e%ef%bc%8e",
    "%20..%20",
    "%2500",
  ];

  test("GET /v1/charges/<dot segment> through the proxy is a 400 naming the parameter; nothing is sent upstream", async () => {
    const before = stripe.requests.length;
    for (const charge of PROXY_CHARGES) {
      for (const trail of ["", "/"]) {
        const r = await raw(s.url, "GET", `/v1/proxy/stripe/v1/charges/${charge}${trail}`);
        expect({ charge, trail, status: r.status }).toEqual({ charge, trail, status: 400 });
        expect(r.body.error.code).toBe("INVALID_INPUT");
        expect(r.body.error.message).toMatch(/params\.charge: /);
      }
    }
    // Percent-encoding that is not UTF-8 (or IIS's %u) is refused by the server's URL parser.
    for (const charge of ["%c0%ae%c0%ae", "%u002e%u002e", "%e0%80%ae"]) {
      const r = await raw(s.url, "GET", `/v1/proxy/stripe/v1/charges/${charge}`);
      expect({ charge, status: r.status }).toEqual({ charge, status: 400 });
    }
    // The stand-in would have answered the full list for /v1/charges/ (or /v1/): it saw nothing.
    expect(stripe.requests.slice(before)).toEqual([]);
  });

  test("the same through the provider's own port (an unmodified SDK's base URL)", async () => {
    const before = stripe.requests.length;
    for (const charge of ["%2e", "..", ".%2e", "%252e%252e", "a%2f..", "%00"]) {
      const r = await raw(s.server.providerUrls.stripe!, "GET", `/v1/charges/${charge}`);
      expect({ charge, status: r.status }).toEqual({ charge, status: 400 });
      expect(r.body.error.message).toMatch(/params\.charge: /);
    }
    expect(stripe.requests.slice(before)).toEqual([]);
  });

  // The operations API takes params as JSON: the same values, written out.
  const BODY_CHARGES: unknown[] = [
    "",
    ".",
    "..",
    "...",
    " .. ",
    "%2e",
    "%2e%2e",
    ".%2e",
    "%252e%252e",
    "%25252e",
    "a/b",
    "../x",
    "/",
    "%2f",
    "a%2Fb",
    "..\\",
    "\\",
    "%5c",
    "\u0000",
    "ch_1\u0000",
    "a\nb",
    "\u007f",
    "..;",
    ";",
    "\uff0e\uff0e",
    "\u2024\u2024",
    "a\uff0fb",
    "\ud800",
    "%c0%ae",
    "%u002e",
    "x".repeat(1025),
  ];

  test("POST /v1/providers/stripe/operations/retrieve_charge with a dot-segment charge is a 400 naming it", async () => {
    const before = stripe.requests.length;
    for (const charge of BODY_CHARGES) {
      const r = await operation("stripe", "retrieve_charge", { charge });
      expect({ charge, status: r.status }).toEqual({ charge, status: 400 });
      // (A NUL or an unpaired surrogate is refused with the body, as text no database can store.)
      expect(r.body.error.message).toMatch(/params\.charge: |^body\.params: the text at charge holds/);
    }
    // Wrong types are refused as before.
    for (const charge of [null, true, {}, [], ["ch_1"]]) {
      const r = await operation("stripe", "retrieve_charge", { charge });
      expect({ charge, status: r.status }).toEqual({ charge, status: 400 });
    }
    expect(stripe.requests.slice(before)).toEqual([]);
  });

  test("a good charge id still goes through, to exactly /v1/charges/<id>", async () => {
    const before = stripe.requests.length;
    const r = await operation("stripe", "retrieve_charge", { charge: "ch_demo_0001" });
    // The stand-in knows no single charges: its 404 is passed on as it is.
    expect(r.status).toBe(404);
    const viaProxy = await raw(s.url, "GET", "/v1/proxy/stripe/v1/charges/ch_demo_0002");
    expect(viaProxy.status).toBe(404);
    // An id with characters that need escaping is escaped once, as one segment.
    await operation("stripe", "retrieve_charge", { charge: "ch 1?x#y" });
    // A lone % is a character like any other (it was a 500: decoded twice).
    expect((await raw(s.url, "GET", "/v1/proxy/stripe/v1/charges/100%25")).status).toBe(404);
    expect(stripe.requests.slice(before).map((q) => q.path)).toEqual([
      "/v1/charges/ch_demo_0001",
      "/v1/charges/ch_demo_0002",
      "/v1/charges/ch%201%3Fx%23y",
      "/v1/charges/100%25",
    ]);
  });

  test("Wise's credential never leaves for another path: profile_id '..' does not reach /wise/transfers", async () => {
    const before = stripe.requests.length;
    for (const profile_id of ["..", ".%2e", "%2e%2e", "../../v1/charges", "1/../..", 0.5]) {
      const r = await operation("wise", "list_transfers", { profile_id });
      if (profile_id === 0.5) {
        // A number is a fine segment; it reaches Wise's own path.
        expect(r.status).not.toBe(400);
        continue;
      }
      expect({ profile_id, status: r.status }).toEqual({ profile_id, status: 400 });
      expect(r.body.error.message).toMatch(/params\.profile_id: /);
    }
    for (const seg of ["%2e%2e", ".%2e", "..", "%252e%252e"]) {
      const r = await raw(s.url, "GET", `/v1/proxy/wise/profiles/${seg}/transfers`);
      expect({ seg, status: r.status }).toEqual({ seg, status: 400 });
    }
    const seen = stripe.requests.slice(before);
    expect(seen.map((q) => q.path)).toEqual(["/wise/profiles/0.5/transfers"]);
    // The Wise token went to Wise's path only.
    for (const q of stripe.requests)
      if (q.headers.authorization === `Bearer ${WISE_TOKEN}`)
        expect(q.path).toMatch(/^\/wise\/profiles\/[^/]+\/transfers$/);
  });

  test("a param the policy sees in its resource is held to the same rule", async () => {
    const before = stripe.requests.length;
    for (const kind of ["..", "../../other", "%2e%2e", "a\u0000"]) {
      const r = await operation("acme", "list_items", { account: "a1", kind });
      expect({ kind, status: r.status }).toEqual({ kind, status: 400 });
      expect(r.body.error.message).toMatch(/params\.kind: |^body\.params: the text at kind holds/);
    }
    expect(stripe.requests.slice(before)).toEqual([]);
    expect((await operation("acme", "list_items", { account: "a1", kind: "open" })).status).toBe(401);
    expect(stripe.requests.slice(before).map((q) => q.path)).toEqual(["/acme/accounts/a1/items"]);
  });

  test("path params are part of the approved call: the same call by either API, no other", async () => {
    const jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    const asked = await operation("acme", "get_item", { item: 7 });
    expect(asked.status).toBe(403);
    expect(asked.body.code).toBe("approval_required");
    const requestId = asked.body.approval_required.request_id;
    expect((await s.http("POST", `/v1/access-requests/${requestId}/approve`, jordan, {})).status).toBe(200);
    const before = stripe.requests.length;
    // Another item, or the approved one with a path trick, is not the approved call.
    const other = await raw(s.url, "GET", "/v1/proxy/acme/items/8");
    expect(other.body.code).toBe("approval_required");
    expect((await raw(s.url, "GET", "/v1/proxy/acme/items/7%2f..%2f8")).status).toBe(400);
    expect((await raw(s.url, "GET", "/v1/proxy/acme/items/8%2f..%2f7")).status).toBe(400);
    expect(stripe.requests.slice(before)).toEqual([]);
    // The approved call through the proxy (the path carries "7", the approval was asked with 7).
    expect((await raw(s.url, "GET", "/v1/proxy/acme/items/7")).status).toBe(401);
    expect((await raw(s.url, "GET", "/v1/proxy/acme/items/7")).body.code).toBe("one_shot_used");
    expect(stripe.requests.slice(before).map((q) => q.path)).toEqual(["/acme/items/7"]);
  });

  test("a refused path parameter is audited as a denial, without the agent's text in action or resource", async () => {
    const r = await raw(s.url, "GET", "/v1/proxy/stripe/v1/charges/%2e%2e");
    expect(r.status).toBe(400);
    const eventId = r.body.error.details?.event_id;
    expect(eventId).toMatch(/^evt_/);
    const line = (await auditLines()).find((l) => l.event_id === eventId);
    expect(line).toMatchObject({
      type: "gateway.denied",
      agent: "support-bot-2",
      project: "project-support",
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges/{charge}",
      decision: "DENY",
      http_status: 400,
      deny_code: "invalid_path_param",
      provider: "stripe",
      operation: "retrieve_charge",
      param: "charge",
    });
    expect(line!.reason).toMatch(/^params\.charge: /);
  });

  test("an agent-chosen provider segment never reaches the audit action or resource", async () => {
    const before = stripe.requests.length;
    const tries = [
      "/v1/proxy/stripe%2f..%2fwise/profiles/1/transfers",
      "/v1/proxy/stripe%2F..%2Fwise/v1/charges",
      "/v1/proxy/%2e%2e/v1/charges",
      "/v1/proxy/stripe%00/v1/charges",
      "/v1/proxy/wise%2fprofiles%2f1/transfers",
      "/v1/proxy/evil-provider/v1/charges",
    ];
    const ids: string[] = [];
    for (const path of tries) {
      const r = await raw(s.url, "GET", path);
      expect({ path, status: r.status }).toEqual({ path, status: 403 });
      expect(r.body.code).toBe("unknown_provider");
      ids.push(r.body.event_id);
    }
    expect(stripe.requests.slice(before)).toEqual([]);
    const lines = (await auditLines()).filter((l) => ids.includes(l.event_id));
    expect(lines).toHaveLength(tries.length);
    for (const l of lines) {
      expect(l).toMatchObject({
        type: "gateway.denied",
        action: "UNKNOWN:unknown",
        resource: "UNKNOWN",
        decision: "DENY",
        deny_code: "unknown_provider",
      });
      expect(l.provider).toBeUndefined();
      // What was asked is kept for the record, percent-encoded: never as a provider's name or path.
      expect(String(l.requested_provider)).toMatch(/^[A-Za-z0-9%._~-]*$/);
    }
    // An unknown path of a known provider is recorded in its still-encoded form only.
    const unknownPath = await raw(s.url, "GET", "/v1/proxy/stripe/v1/transfers%2f..%2fcharges");
    expect(unknownPath.status).toBe(403);
    const l = (await auditLines()).find((x) => x.event_id === unknownPath.body.event_id);
    expect(l).toMatchObject({ action: "stripe:unknown", resource: "stripe/v1/transfers%2f..%2fcharges" });
  });
});

describe("path parameters: the checks themselves", () => {
  test("segmentProblem refuses dot segments and separators after every decoding, accepts ids", async () => {
    const { segmentProblem } = await import("../../src/providers/path-params.js");
    for (const ok of ["ch_1", "cus_ABC", "42", "a.b", "...a", "a..", "ch 1", "é", "a%2", "100%", "a;b", "~x"])
      expect({ ok, problem: segmentProblem(ok) }).toEqual({ ok, problem: undefined });
    for (const bad of [
      "",
      ".",
      "..",
      "%2e",
      "%2E%2E",
      ".%2e",
      "%252e",
      "%25252e%25252e",
      "a/b",
      "%2f",
      "%252F",
      "\\",
      "%5C",
      "\u0000",
      "%00",
      "%2500",
      "\r",
      "\u0085",
      "..;",
      ";x",
      "\uff0e",
      "\uff0f",
      "%ef%bc%8e%ef%bc%8e",
      "%c0%ae",
      "%u002e",
      "\ud800",
    ])
      expect({ bad, problem: typeof segmentProblem(bad) }).toEqual({ bad, problem: "string" });
  });

  test("checkUpstreamUrl: the one check before sending fails closed on any URL that is not the template's", async () => {
    const { checkUpstreamUrl } = await import("../../src/providers/path-params.js");
    const spec = parseProviderFile({
      file: "acme.yaml",
      text: `name: acme
display_name: Acme
api_base_url: https://api.acme.test/v2
auth: { type: bearer, credential: ACME_KEY }
op_groups: { read: { default: allow } }
operations:
  - { name: get_thing, op_group: read, method: GET, endpoint: "/things/{id}/parts/{part}" }
`,
    });
    if (!spec.ok) throw new Error(JSON.stringify(spec.error));
    const op = spec.value.operations.get("get_thing")!;
    const base = "https://api.acme.test/v2";
    const ok = checkUpstreamUrl(new URL(`${base}/things/t1/parts/p%201?x=1`), base, op, {
      id: "t1",
      part: "p 1",
    });
    expect(ok).toEqual({ ok: true });
    const bad: [string, Record<string, unknown>][] = [
      // normalised away by the URL parser: the template's path is not what would be sent
      [`${base}/things/./parts/p1`, { id: ".", part: "p1" }],
      [`${base}/things/t1/parts/..`, { id: "t1", part: ".." }],
      [`${base}/things/t1/parts/p1`, { id: "t2", part: "p1" }],
      [`${base}/things/t1%2Fx/parts/p1`, { id: "t1/x", part: "p1" }],
      ["https://api.acme.test/things/t1/parts/p1", { id: "t1", part: "p1" }],
      ["https://evil.test/v2/things/t1/parts/p1", { id: "t1", part: "p1" }],
      ["http://api.acme.test/v2/things/t1/parts/p1", { id: "t1", part: "p1" }],
      ["https://user:pw@api.acme.test/v2/things/t1/parts/p1", { id: "t1", part: "p1" }],
      [`${base}/things/t1/parts/p1#x`, { id: "t1", part: "p1" }],
      [`${base}/things/t1/parts/p1/`, { id: "t1", part: "p1" }],
    ];
    for (const [url, params] of bad)
      expect({ url, ok: checkUpstreamUrl(new URL(url), base, op, params).ok }).toEqual({ url, ok: false });
  });

  test("provider specs refuse endpoints a URL parser would rewrite, and placeholders that are not whole segments", () => {
    const spec = (endpoint: string) =>
      parseProviderFile({
        file: "acme.yaml",
        text: `name: acme
display_name: Acme
api_base_url: https://api.acme.test
auth: { type: bearer, credential: ACME_KEY }
op_groups: { read: { default: allow } }
operations:
  - { name: get_thing, op_group: read, method: GET, endpoint: "${endpoint}" }
`,
      });
    expect(spec("/things/{id}").ok).toBe(true);
    expect(spec("/v1/things.json").ok).toBe(true);
    for (const endpoint of [
      "/things/./{id}",
      "/things/../{id}",
      "/things//{id}",
      "/things/{id}.json",
      "/x{id}",
      "/{a}{b}",
      "/things/.",
    ]) {
      const r = spec(endpoint);
      expect({ endpoint, ok: r.ok }).toEqual({ endpoint, ok: false });
    }
  });
});
