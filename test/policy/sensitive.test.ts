import { describe, expect, test } from "vitest";
import {
  detect,
  ibanValid,
  luhnValid,
  redactParams,
  type SensitiveKind,
  scanParams,
} from "../../src/policy/sensitive.js";

/** Each detector: text that holds its kind, and look-alikes that must not count. */
const CASES: Record<SensitiveKind, { found: string[]; notFound: string[] }> = {
  email: {
    found: ["alice@acme.com", "write to Bob.Smith+billing@mail.example.co.uk today", "x@y.io"],
    notFound: ["@acme.com", "alice@", "user@localhost", "not an address: a@b", "price 5 @ 10 EUR"],
  },
  iban: {
    found: [
      "DE89370400440532013000",
      "pay GB82 WEST 1234 5698 7654 32 now",
      "FR1420041010050500013M02606",
      // Followed by more words, as IBANs are written; lower case; dashes.
      "DE89370400440532013000 EUR",
      "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX",
      "de89370400440532013000",
      "DE89-3704-0044-0532-0130-00",
    ],
    // Wrong check digits; too short; a product code of the same shape.
    notFound: ["DE89370400440532013001", "DE8937040044", "AB12CDEFGHIJKLMNOP"],
  },
  card_number: {
    found: [
      "4242424242424242",
      "card 4111 1111 1111 1111 exp 12/29",
      "5555-5555-5555-4444",
      "378282246310005",
      // Followed by the security code or the expiry, or after an order number.
      "4111 1111 1111 1111 123",
      "4111 1111 1111 1111 12 28",
      "order 12 4111111111111111",
    ],
    // Luhn-invalid numbers of card length; too short; an order number; a phone number.
    notFound: [
      "4242424242424241",
      "1234567812345678",
      "424242424242",
      "order 2024010112345",
      "+49 30 1234567",
    ],
  },
  api_key: {
    found: [
      "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
      "key=AKIAIOSFODNN7EXAMPLE",
      "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
      "xoxb-1234567890-abcdefghij",
      "AIzaSyA1234567890abcdefghijklmnopqrstuv",
      "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
    notFound: ["sk_live_short", "AKIA1234", "the ghp_ prefix alone", "skeleton-key", "eyJ.eyJ.x"],
  },
  private_key: {
    found: [
      "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...",
      "-----BEGIN OPENSSH PRIVATE KEY-----",
      "-----BEGIN PRIVATE KEY-----",
    ],
    notFound: ["-----BEGIN PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----", "my private key is safe"],
  },
};

describe("detectors: true positives and false positives", () => {
  for (const [kind, { found, notFound }] of Object.entries(CASES) as [
    SensitiveKind,
    (typeof CASES)[SensitiveKind],
  ][]) {
    test.each(found)(`${kind} found in %j`, (text) => {
      expect(detect(text, [kind])).toEqual([kind]);
    });
    test.each(notFound)(`${kind} not found in %j`, (text) => {
      expect(detect(text, [kind])).toEqual([]);
    });
  }

  test("the checks themselves: Luhn and IBAN mod 97", () => {
    expect(luhnValid("4242424242424242")).toBe(true);
    expect(luhnValid("4242424242424243")).toBe(false);
    expect(luhnValid("79927398713")).toBe(true);
    expect(ibanValid("GB82 WEST 1234 5698 7654 32")).toBe(true);
    expect(ibanValid("GB82 WEST 1234 5698 7654 33")).toBe(false);
  });
});

describe("scanning and redacting parameters", () => {
  const params = {
    to: "alice@acme.com",
    payment: { card: "4242 4242 4242 4242", items: ["ok", "iban DE89370400440532013000"] },
    "bob@example.org": true,
    note: "nothing here",
  };

  test("every finding names its kind and place, never the value; names of parameters count too", () => {
    const findings = scanParams(params, ["email", "card_number", "iban"]);
    expect(findings).toEqual(
      expect.arrayContaining([
        { kind: "email", path: "params.to" },
        { kind: "card_number", path: "params.payment.card" },
        { kind: "iban", path: "params.payment.items.1" },
        { kind: "email", path: "params.<key>" },
      ]),
    );
    expect(findings).toHaveLength(4);
    expect(JSON.stringify(findings)).not.toContain("alice");
    expect(scanParams(params, ["api_key"])).toEqual([]);
  });

  test("parameters too deep or too many to check are reported as such (the caller fails closed)", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 40; i++) deep = { deep };
    expect(scanParams(deep, ["email"])).toBeUndefined();
    expect(scanParams({ many: Array.from({ length: 10_001 }, () => "a") }, ["email"])).toBeUndefined();
  });

  test("redaction replaces exactly the values of the kinds asked, keeping everything else", () => {
    expect(redactParams(params, ["email", "card_number"])).toEqual({
      to: "[redacted:email]",
      payment: { card: "[redacted:card_number]", items: ["ok", "iban DE89370400440532013000"] },
      "[redacted:email]#1": true,
      note: "nothing here",
    });
    expect(redactParams(params, [])).toBe(params);
  });

  test("two names redacted alike stay two; a number is scanned and redacted as its digits", () => {
    const hidden = redactParams(
      {
        to: { "mallory@evil.example": { amount: 999999 }, "[redacted:email]": { amount: 1 } },
        card: 4111111111111111,
      },
      ["email", "card_number"],
    );
    expect(hidden).toEqual({
      to: { "[redacted:email]#1": { amount: 999999 }, "[redacted:email]#2": { amount: 1 } },
      card: "[redacted:card_number]",
    });
    expect(scanParams({ card: 4111111111111111 }, ["card_number"])).toEqual([
      { kind: "card_number", path: "params.card" },
    ]);
  });

  test("a place never quotes a parameter name that could hold a value; the value is never in it", () => {
    expect(scanParams({ "alice@example.com": "DE89370400440532013000" }, ["iban"])).toEqual([
      { kind: "iban", path: "params.<key>" },
    ]);
    expect(scanParams({ "some key with spaces": { iban: "DE89370400440532013000" } }, ["iban"])).toEqual([
      { kind: "iban", path: "params.<key>.iban" },
    ]);
  });

  test("hostile text is scanned in linear time: a JWT-shaped run of 210,000 characters", () => {
    expect(detect("ey-".repeat(70_000), ["api_key"])).toEqual([]);
  });
});
