import { describe, expect, test } from "vitest";
import {
  type AuditLine,
  ChainVerifier,
  canonicalJson,
  GENESIS_HASH,
  hashLine,
} from "../../src/audit/chain.js";

describe("canonical JSON", () => {
  test("sorts keys at every level and writes no whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, "x", null, true], c: "é" } })).toBe(
      '{"a":{"c":"é","d":[1,"x",null,true]},"b":1}',
    );
  });
  test("omits undefined values and refuses non-JSON values", () => {
    expect(canonicalJson({ a: undefined, b: 2 })).toBe('{"b":2}');
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ a: () => 1 })).toThrow(/function/);
  });
  test("escapes strings exactly as JSON.stringify does", () => {
    expect(canonicalJson({ s: 'quote " backslash \\ newline \n tab \t' })).toBe(
      JSON.stringify({ s: 'quote " backslash \\ newline \n tab \t' }),
    );
  });
  test("every string, with or without characters to escape, is written exactly as JSON.stringify writes it", () => {
    // Every code unit that JSON escapes or that borders a range the fast path treats as plain,
    // alone and inside text, and lone and paired surrogates.
    const units = [
      0, 1, 0x1f, 0x20, 0x21, 0x22, 0x5c, 0x7f, 0x2028, 0x2029, 0xd7ff, 0xd800, 0xdbff, 0xdc00, 0xdfff,
      0xe000, 0xfeff, 0xffff,
    ];
    const samples = ["", "plain text", "\ud83d\ude00 paired", "caf\u00e9"];
    for (const u of units) {
      const c = String.fromCharCode(u);
      samples.push(c, `a${c}`, `${c}z`, `mid ${c} dle`, `${c}${c}`);
    }
    for (const s of samples) expect(canonicalJson(s), JSON.stringify(s)).toBe(JSON.stringify(s));
  });
});

function chain(n: number): AuditLine[] {
  const lines: AuditLine[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const body = {
      seq,
      event_id: `evt_${seq}`,
      ts: new Date(Date.UTC(2026, 4, 1, 0, 0, seq)).toISOString(),
      type: "gateway.denied",
      agent: "a",
      project: "p",
      action: "x:y",
      resource: "r",
      decision: "DENY",
      reason: "why",
      http_status: 403,
    };
    const hash = hashLine(prev, body);
    lines.push({ ...body, prev_hash: prev, hash });
    prev = hash;
  }
  return lines;
}

describe("chain verification", () => {
  test("an intact chain verifies", () => {
    const v = new ChainVerifier();
    for (const l of chain(5)) expect(v.push(l)).toBeUndefined();
    expect(v.count).toBe(5);
    expect(v.last.seq).toBe(5);
  });

  test("a changed field is reported at its sequence number", () => {
    const lines = chain(5);
    lines[2] = { ...lines[2]!, decision: "ALLOW" };
    const v = new ChainVerifier();
    const breaks = lines.map((l) => v.push(l));
    expect(breaks[1]).toBeUndefined();
    expect(breaks[2]).toMatchObject({
      seq: 3,
      problem: expect.stringContaining("changed after it was written"),
    });
  });

  test("a re-hashed forgery is caught at the next link", () => {
    const lines = chain(5);
    const forged = { ...lines[2]!, reason: "forged" };
    forged.hash = hashLine(forged.prev_hash, forged);
    lines[2] = forged;
    const v = new ChainVerifier();
    for (const l of lines) v.push(l);
    expect(v.broken).toMatchObject({ seq: 4, problem: expect.stringContaining("prev_hash") });
  });

  test("a removed event is reported where the gap starts", () => {
    const lines = chain(5);
    lines.splice(1, 1);
    const v = new ChainVerifier();
    for (const l of lines) v.push(l);
    expect(v.broken).toMatchObject({ seq: 2, problem: expect.stringContaining("missing") });
  });

  test("an added detail field changes the hash", () => {
    const lines = chain(2);
    const v = new ChainVerifier();
    v.push(lines[0]!);
    expect(v.push({ ...lines[1]!, approved_by: "mallory" })).toMatchObject({ seq: 2 });
  });
});
