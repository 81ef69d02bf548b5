import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freezeReaction, postRevolutEvent, TREASURY } from "../fixtures/treasury.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const REACTION = freezeReaction(["7995", "6051"]);

/** The seed's reactive governance: a card used at a blocked merchant category is frozen, through the pipeline. */
describe(`webhook reactions (${ENGINE})`, () => {
  const seen: { method: string; path: string; headers: IncomingHttpHeaders }[] = [];
  const revolut = createServer((req, res) => {
    seen.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers });
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ state: "FROZEN" }));
    });
  });
  let dir: string;
  let s: TestServer;

  beforeAll(async () => {
    await new Promise<void>((r) => revolut.listen(0, "127.0.0.1", r));
    dir = await mkdtemp(join(tmpdir(), "butler-providers-"));
    const spec = await readFile(new URL("../../providers/revolut.yaml", import.meta.url), "utf8");
    await writeFile(join(dir, "revolut.yaml"), spec.replace(/webhooks:\n( {2}.*\n)+/, REACTION));
    s = await startTestServer({
      policies: { "treasury.yaml": TREASURY },
      env: {
        PROVIDERS_DIR: dir,
        BUTLER_PROVIDER_URLS: `revolut=http://127.0.0.1:${(revolut.address() as AddressInfo).port}`,
        REVOLUT_ACCESS_TOKEN: "revolut-access",
        REVOLUT_WEBHOOK_SECRET: "revolut-signing",
      },
    });
  });
  afterAll(async () => {
    await s?.cleanup();
    await new Promise<void>((r) => revolut.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  const deliver = (event: unknown) =>
    postRevolutEvent(s.url, JSON.stringify(event), "revolut-signing", Date.now());

  test("a transaction at a blocked merchant category freezes the card; an ordinary one does nothing", async () => {
    const blocked = await deliver({
      event: "TransactionCreated",
      data: { id: "txn_1", card_id: "card_9", merchant: { category_code: "7995", name: "Casino" } },
    });
    expect(blocked).toEqual({
      status: 200,
      body: {
        received: true,
        duplicate: false,
        event_id: "txn_1",
        event_type: "TransactionCreated",
        reactions: [{ name: "freeze_on_blocked_merchant", status: 200 }],
      },
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: "POST", path: "/cards/card_9/freeze" });
    expect(seen[0]!.headers.authorization).toBe("Bearer revolut-access");
    const ordinary = await deliver({
      event: "TransactionCreated",
      data: { id: "txn_2", card_id: "card_9", merchant: { category_code: "5411" } },
    });
    expect(ordinary.body.reactions).toEqual([]);
    expect(seen).toHaveLength(1);
    // Through the pipeline: decided and audited like an agent's call, as the configured actor.
    const lines = (await s.cli(["audit", "export", "--project", "treasury"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(["policy.loaded", "gateway.allowed", "provider.called"]);
    expect(lines[1]).toMatchObject({
      agent: "butler-reactions",
      action: "revolut:cards:freeze",
      resource: "revolut.com/cards/card_9",
      via: "reaction freeze_on_blocked_merchant",
    });
  });
});
