import { describe, expect, test } from "vitest";
import type { Change } from "../../src/db/changes.js";
import { createCredentials } from "../../src/providers/credentials.js";

/** The vault as the cache sees it: values by name, each read counted; a read can be made to fail. */
function fakeVault(values: Record<string, string>) {
  const v = {
    values: { ...values },
    reads: 0,
    failNext: undefined as Error | undefined,
    async get(name: string) {
      v.reads++;
      const e = v.failNext;
      v.failNext = undefined;
      if (e) throw e;
      return v.values[name];
    },
  };
  return v;
}

function setup(env: Record<string, string> = {}, stored: Record<string, string> = {}) {
  const vault = fakeVault(stored);
  const handlers: ((c: Change) => void)[] = [];
  const added: [string, string | null | undefined][] = [];
  const credentials = createCredentials({
    fromEnv: (name) => env[name],
    vault,
    secrets: { add: (name, value) => void added.push([name, value]) },
    changes: {
      subscribe: (h) => {
        handlers.push(h);
        return () => {};
      },
    },
  });
  const notify = (c: Change) => {
    for (const h of handlers) h(c);
  };
  return { vault, credentials, notify, added };
}

describe("provider credentials: the vault is read once per name, until a credential changes", () => {
  test("a stored credential is read and decrypted once, then served from memory", async () => {
    const { vault, credentials, added } = setup({}, { WISE_API_TOKEN: "wise_token_value_1" });
    for (let i = 0; i < 5; i++) expect(await credentials.get("WISE_API_TOKEN")).toBe("wise_token_value_1");
    expect(vault.reads).toBe(1);
    // Registered as a secret once, not at every call.
    expect(added).toEqual([["WISE_API_TOKEN", "wise_token_value_1"]]);
  });

  test("a change on any instance (or a resync) drops what was kept: the next call reads the new value", async () => {
    const { vault, credentials, notify, added } = setup({}, { WISE_API_TOKEN: "wise_token_value_1" });
    await credentials.get("WISE_API_TOKEN");
    vault.values.WISE_API_TOKEN = "wise_token_value_2";
    expect(await credentials.get("WISE_API_TOKEN")).toBe("wise_token_value_1");
    notify({ kind: "credentials" });
    expect(await credentials.get("WISE_API_TOKEN")).toBe("wise_token_value_2");
    delete vault.values.WISE_API_TOKEN;
    notify({ kind: "resync" });
    expect(await credentials.get("WISE_API_TOKEN")).toBeUndefined();
    // A stored credential that was missing is found once it is stored (this instance's vault says so).
    vault.values.WISE_API_TOKEN = "wise_token_value_3";
    credentials.invalidate();
    expect(await credentials.get("WISE_API_TOKEN")).toBe("wise_token_value_3");
    expect(added.map(([, v]) => v)).toEqual([
      "wise_token_value_1",
      "wise_token_value_2",
      "wise_token_value_3",
    ]);
    // Other changes keep it.
    notify({ kind: "tokens" });
    notify({ kind: "policy", project: "p" });
    await credentials.get("WISE_API_TOKEN");
    expect(vault.reads).toBe(4);
  });

  test("a change that arrives while the vault is read drops that read too", async () => {
    const { vault, credentials, notify } = setup({}, { WISE_API_TOKEN: "wise_token_value_1" });
    const first = credentials.get("WISE_API_TOKEN");
    vault.values.WISE_API_TOKEN = "wise_token_value_2";
    notify({ kind: "credentials" });
    await first;
    expect(await credentials.get("WISE_API_TOKEN")).toBe("wise_token_value_2");
  });

  test("a failed read is not kept: the next call tries again", async () => {
    const { vault, credentials } = setup({}, { WISE_API_TOKEN: "wise_token_value_1" });
    vault.failNext = new Error("credential WISE_API_TOKEN does not decrypt");
    await expect(credentials.get("WISE_API_TOKEN")).rejects.toThrow(/does not decrypt/);
    expect(await credentials.get("WISE_API_TOKEN")).toBe("wise_token_value_1");
    expect(vault.reads).toBe(2);
  });

  test("the environment wins over the vault and is read at every call", async () => {
    const env = { STRIPE_API_KEY: "sk_test_from_env_1" };
    const { vault, credentials } = setup(env, { STRIPE_API_KEY: "sk_test_from_vault" });
    expect(await credentials.get("STRIPE_API_KEY")).toBe("sk_test_from_env_1");
    env.STRIPE_API_KEY = "sk_test_from_env_2";
    expect(await credentials.get("STRIPE_API_KEY")).toBe("sk_test_from_env_2");
    expect(vault.reads).toBe(0);
  });
});
