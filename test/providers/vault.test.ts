import { describe, expect, test } from "vitest";
import { keyIdOf, open, seal } from "../../src/providers/vault.js";

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
