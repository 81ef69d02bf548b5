import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { loadProviders } from "../../src/providers/provider-gateway.js";
import { parseProviderFile } from "../../src/providers/spec.js";
import { formatIssue } from "../../src/yaml-file.js";
import { runCli } from "../helpers/server.js";

describe("provider specs", () => {
  test("the shipped specs load, with Stripe's operation groups and defaults", async () => {
    const set = await loadProviders(new URL("../../providers", import.meta.url).pathname);
    expect(set.failures).toEqual([]);
    expect([...set.providers.keys()]).toEqual(["revolut", "stripe", "wise"]);
    const stripe = set.providers.get("stripe")!;
    expect(Object.fromEntries([...stripe.groups].map(([k, g]) => [k, g.default]))).toEqual({
      read: "allow",
      "payments.create": "deny",
      "payments.refund": "deny",
      "subscriptions.write": "deny",
      "connect.onboard": "allow",
      "issuing.create": "deny",
    });
    expect(stripe.groups.get("connect.onboard")!.roles).toEqual(["onboarding"]);
    expect(stripe.operations.get("list_charges")).toMatchObject({
      method: "GET",
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
      encoding: "query",
    });
    expect(stripe.operations.get("create_refund")).toMatchObject({
      encoding: "form",
      group: "payments.refund",
    });
    expect(
      set.providers
        .get("revolut")!
        .operations.get("create_payment")!
        .constraints.map((c) => c.param),
    ).toEqual(["amount", "currency", "receiver.account_id"]);
  });

  test("every problem is reported with its file, line and column", () => {
    const text = `name: acme
display_name: Acme
api_base_url: ftp://acme.example
auth: { type: bearer, credential: acme_key }
op_groups:
  read: { default: allow }
operations:
  - name: list_things
    op_group: reads
    method: GET
    endpoint: /things
  - name: list_things
    op_group: read
    method: FETCH
    endpoint: /things/{id
    resorce: acme.example/things
`;
    const r = parseProviderFile({ file: "acme.yaml", text });
    expect(r.ok).toBe(false);
    const lines = r.ok ? [] : r.error.map(formatIssue);
    expect(lines).toEqual([
      "acme.yaml:3:15: api_base_url: must be an http(s) URL without user name or password",
      "acme.yaml:4:35: auth.credential: must be an environment variable name such as STRIPE_API_KEY",
      "acme.yaml:14:13: operations[1].method: must be GET, POST, PUT, PATCH or DELETE",
      "acme.yaml:16:5: operations[1].resorce: unknown key 'resorce'; did you mean 'resource'? Allowed keys here: name, op_group, method, endpoint, action, resource, encoding, description, params, constraints, timeout_ms, approval, amount",
    ]);
    // Once the shape is right, the cross-checks speak.
    const fixed = text
      .replace("ftp://", "https://")
      .replace("acme_key", "ACME_KEY")
      .replace("FETCH", "GET")
      .replace("    resorce: acme.example/things\n", "");
    const r2 = parseProviderFile({ file: "acme.yaml", text: fixed });
    expect(r2.ok ? [] : r2.error.map(formatIssue)).toEqual([
      "acme.yaml:9:15: operations[0].op_group: op_group 'reads' is not in op_groups (read)",
      "acme.yaml:12:11: operations[1].name: operation 'list_things' is defined twice",
      "acme.yaml:15:15: operations[1].endpoint: has an unbalanced { or }",
    ]);
  });

  test("a kind: read group holds only reads: a non-GET or money-moving operation there is refused", () => {
    const text = `name: acme
display_name: Acme
api_base_url: https://acme.example
auth: { type: bearer, credential: ACME_KEY }
op_groups:
  read: { default: allow, kind: read }
  write: { default: deny }
operations:
  - name: list_things
    op_group: read
    method: GET
    endpoint: /things
  - name: delete_thing
    op_group: read
    method: DELETE
    endpoint: /things/{id}
  - name: pay_thing
    op_group: read
    method: GET
    endpoint: /things/{id}/pay
    amount: { field: amount, currency: EUR }
  - name: make_thing
    op_group: write
    method: POST
    endpoint: /things
`;
    const r = parseProviderFile({ file: "acme.yaml", text });
    expect(r.ok ? [] : r.error.map(formatIssue)).toEqual([
      "acme.yaml:15:13: operations[1].method: op_group 'read' is kind: read, so its operations must be GET (this is DELETE); put it in a write group",
      "acme.yaml:21:13: operations[2].amount: op_group 'read' is kind: read, and an operation that moves money is not a read",
    ]);
    const fixed = parseProviderFile({
      file: "acme.yaml",
      text: text
        .replace("method: DELETE", "method: GET")
        .replace("    amount: { field: amount, currency: EUR }\n", ""),
    });
    if (!fixed.ok) throw new Error(fixed.error.map(formatIssue).join("\n"));
    const ops = fixed.value.operations;
    expect([...ops.values()].map((o) => [o.name, o.read])).toEqual([
      ["list_things", true],
      ["delete_thing", true],
      ["pay_thing", true],
      // A group that does not say it reads is a write group: its decisions commit before the call.
      ["make_thing", false],
    ]);
    expect(fixed.value.groups.get("write")!.kind).toBe("write");
  });

  test("the shipped specs' read groups are kind: read, and only their operations are reads", async () => {
    const set = await loadProviders(new URL("../../providers", import.meta.url).pathname);
    for (const spec of set.providers.values())
      for (const op of spec.operations.values())
        expect([op.name, op.read]).toEqual([op.name, op.group === "read"]);
  });

  test("butler providers validate names the problems and exits 1", async () => {
    const ok = await runCli(
      ["providers", "validate", new URL("../../providers", import.meta.url).pathname],
      {},
    );
    expect(ok).toMatchObject({ code: 0, stdout: "3 providers valid: revolut, stripe, wise\n" });
    const dir = await mkdtemp(join(tmpdir(), "butler-providers-"));
    try {
      await writeFile(join(dir, "bad.yaml"), "name: Bad\n");
      const bad = await runCli(["providers", "validate", dir], {});
      expect(bad.code).toBe(1);
      expect(bad.stdout).toContain(`${join(dir, "bad.yaml")}:1:7: name: must be lower-case letters`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("two providers whose operations would be the same MCP tool (<provider>_<operation>): the second is refused, naming both", async () => {
    const spec = (name: string, op: string) => `name: ${name}
display_name: ${name}
api_base_url: https://${name}.example
auth: { type: bearer, credential: ACME_KEY }
op_groups:
  read: { default: allow, kind: read }
operations:
  - name: ${op}
    op_group: read
    method: GET
    endpoint: /things
`;
    const dir = await mkdtemp(join(tmpdir(), "butler-providers-"));
    try {
      await writeFile(join(dir, "a.yaml"), spec("acme", "pay_list"));
      await writeFile(join(dir, "b.yaml"), spec("acme_pay", "list"));
      // Nor may one shadow Butler's own tool.
      await writeFile(join(dir, "c.yaml"), spec("butler", "request_access"));
      const set = await loadProviders(dir);
      expect([...set.providers.keys()]).toEqual(["acme"]);
      expect(set.failures.map((f) => f.issues.map(formatIssue))).toEqual([
        [
          `${join(dir, "b.yaml")}:8:11: operations[0].name: its MCP tool would be acme_pay_list, which is already provider acme's operation pay_list; rename one`,
        ],
        [
          `${join(dir, "c.yaml")}:8:11: operations[0].name: its MCP tool would be butler_request_access, which is already Butler's own tool; rename one`,
        ],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
