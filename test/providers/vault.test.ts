import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { createLogger } from "../../src/logger.js";
import { createVault, keyIdOf, open, seal } from "../../src/providers/vault.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";

describe("the credential vault's sealing", () => {
  const key = Buffer.alloc(32, 7);
  test("round-trips, and fails closed under another key, on another name, or when altered", () => {
    const sealed = seal(key, "STRIPE_API_KEY", "sk_live_abc");
    expect(sealed.keyId).toBe(keyIdOf(key));
    expect(Buffer.from(sealed.ciphertext, "base64").toString()).not.toContain("sk_live_abc");
    expect(open(key, "STRIPE_API_KEY", sealed)).toBe("sk_live_abc");
    expect(() => open(Buffer.alloc(32, 8), "STRIPE_API_KEY", sealed)).toThrow();
    // The name is authenticated: a ciphertext copied to another name does not open.
    expect(() => open(key, "WISE_API_TOKEN", sealed)).toThrow();
    const flipped = Buffer.from(sealed.ciphertext, "base64");
    flipped[0]! ^= 1;
    expect(() =>
      open(key, "STRIPE_API_KEY", { ...sealed, ciphertext: flipped.toString("base64") }),
    ).toThrow();
    // A fresh IV every time: the same value never seals to the same bytes.
    expect(seal(key, "STRIPE_API_KEY", "sk_live_abc").ciphertext).not.toBe(sealed.ciphertext);
  });
});

describe(`the credential vault's records (${ENGINE})`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t?.cleanup());

  /** A stored or deleted credential without its audit line would be a change nobody can account for. */
  test("a change whose audit line cannot be written is not made", async () => {
    const key = Buffer.alloc(32, 7);
    const audit = createAuditLog({
      database: t.database,
      clock: new FakeClock(),
      log: createLogger("silent"),
    });
    const changes = { publish: async () => {} };
    const vault = createVault({ db: t.database.db, audit, clock: new FakeClock(), masterKey: key, changes });
    await vault.set("STRIPE_API_KEY", "sk_test_first_value", "admin");
    const failing = createVault({
      db: t.database.db,
      audit: {
        appendInTx: async () => {
          throw new Error("the audit chain is unavailable");
        },
      },
      clock: new FakeClock(),
      masterKey: key,
      changes,
    });
    await expect(failing.set("STRIPE_API_KEY", "sk_test_other_value", "admin")).rejects.toThrow(/audit/);
    await expect(failing.set("WISE_API_TOKEN", "wise_value_1234", "admin")).rejects.toThrow(/audit/);
    await expect(failing.delete("STRIPE_API_KEY", "admin")).rejects.toThrow(/audit/);
    expect(await vault.get("STRIPE_API_KEY")).toBe("sk_test_first_value");
    expect((await vault.list()).map((c) => c.name)).toEqual(["STRIPE_API_KEY"]);
  });

  /** Instances keep what they read from the vault (credentials.ts): a change must reach them all. */
  test("a stored, replaced or deleted credential is announced to every instance, and to this one once committed", async () => {
    const key = Buffer.alloc(32, 7);
    const audit = createAuditLog({
      database: t.database,
      clock: new FakeClock(),
      log: createLogger("silent"),
    });
    const seen: string[] = [];
    const vault = createVault({
      db: t.database.db,
      audit,
      clock: new FakeClock(),
      masterKey: key,
      changes: {
        publish: async (q, c) => {
          // Published inside the change's transaction: delivered only if it commits.
          expect(q).not.toBe(t.database.db);
          seen.push(`published ${c.kind}`);
        },
      },
      onChanged: () => seen.push("changed here"),
    });
    await vault.set("WISE_API_TOKEN", "wise_value_first", "admin");
    await vault.set("WISE_API_TOKEN", "wise_value_second", "admin");
    await vault.delete("WISE_API_TOKEN", "admin");
    await expect(vault.delete("WISE_API_TOKEN", "admin")).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect(seen).toEqual([
      "published credentials",
      "changed here",
      "published credentials",
      "changed here",
      "published credentials",
      "changed here",
    ]);
  });
});
