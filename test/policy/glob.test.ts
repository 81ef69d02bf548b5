import { describe, expect, test } from "vitest";
import { compileGlob, mustCompileGlob } from "../../src/policy/glob.js";

const m = (pattern: string, input: string) => mustCompileGlob(pattern).match(input);

describe("glob matching", () => {
  test.each([
    ["arn:aws:s3:::ledger-internal/*", "arn:aws:s3:::ledger-internal/2026/05.csv", true],
    ["arn:aws:s3:::ledger-internal/*", "arn:aws:s3:::ledger-internal/", true],
    ["arn:aws:s3:::ledger-internal/*", "arn:aws:s3:::ledger-internal", false],
    ["arn:aws:s3:::ledger-internal/*", "arn:aws:s3:::ledger-internal-evil/x", false],
    ["feature/*", "feature/x", true],
    ["feature/*", "feature/x/y", true],
    ["feature/*", "main", false],
    ["feature/*", "xfeature/x", false],
    ["*", "", true],
    ["*", "anything at all", true],
    ["a*b*c", "abc", true],
    ["a*b*c", "aXbYc", true],
    ["a*b*c", "acb", false],
    ["a*b*c", "abcb", false],
    ["*.csv", "x.csv.bak", false],
    ["*.csv", ".csv", true],
    ["ab*ba", "aba", false],
    ["ab*ba", "abba", true],
    ["v?", "v1", true],
    ["v?", "v", false],
    ["v?", "v12", false],
    ["?", "😀", true],
    ["a?c", "a😀c", true],
    ["a?c", "a😀😀c", false],
    ["*?", "", false],
    ["*?*", "x", true],
    ["ünï*", "ünïcode", true],
    ["é", "e\u0301", false],
    ["Read", "read", false],
  ])("%s matches %j: %s", (pattern, input, expected) => {
    expect(m(pattern, input)).toBe(expected);
  });

  test("regex metacharacters are literal", () => {
    for (const meta of [".", "+", "(", ")", "|", "^", "$"]) {
      expect(m(`a${meta}b`, `a${meta}b`)).toBe(true);
      expect(m(`a${meta}b`, "axb")).toBe(false);
    }
    expect(m("a.*", "a.anything")).toBe(true);
    expect(m("a.*", "ab")).toBe(false);
    expect(m("(a|b)", "a")).toBe(false);
  });

  test("escapes make wildcards literal", () => {
    expect(m("a\\*b", "a*b")).toBe(true);
    expect(m("a\\*b", "axb")).toBe(false);
    expect(m("a\\?", "a?")).toBe(true);
    expect(m("a\\?", "ab")).toBe(false);
    expect(m("a\\[1\\]", "a[1]")).toBe(true);
    expect(mustCompileGlob("x\\*").literal).toBe("x*");
  });

  test.each([
    ["", "is empty"],
    ["a[bc]", "character classes"],
    ["{a,b}", "alternatives"],
    ["abc\\", "lone backslash"],
    ["a\u0000b", "control character"],
    ["tab\there", "control character"],
    ["\ud800x", "surrogate"],
    ["x".repeat(1025), "longer than 1024"],
  ])("rejects malformed pattern %j", (pattern, message) => {
    const r = compileGlob(pattern);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(message);
  });

  test("hostile inputs finish quickly and correctly", () => {
    const huge = "a".repeat(1_000_000);
    expect(m("*a*a*a*a*a*a*a*a*b", huge)).toBe(false);
    expect(m("a*a*a*a*a*a*a*a*a?b", `${"a".repeat(5000)}`)).toBe(false);
    expect(m("*", huge)).toBe(true);
    expect(m("a*", huge)).toBe(true);
    expect(m("*b", huge)).toBe(false);
    expect(m(`${"a*".repeat(100)}`, huge)).toBe(true);
  });

  test("a star-only pattern and a ?-pattern agree with a reference matcher on random input", () => {
    const alphabet = ["a", "b", "/", "😀"];
    const rnd = seeded(42);
    for (let i = 0; i < 2000; i++) {
      const pat = Array.from({ length: 1 + Math.floor(rnd() * 6) }, () =>
        rnd() < 0.3 ? "*" : rnd() < 0.2 ? "?" : alphabet[Math.floor(rnd() * alphabet.length)]!,
      ).join("");
      const input = Array.from(
        { length: Math.floor(rnd() * 8) },
        () => alphabet[Math.floor(rnd() * alphabet.length)]!,
      ).join("");
      expect(m(pat, input), `${pat} vs ${input}`).toBe(reference(pat, input));
    }
  });
});

/** A slow, obviously correct matcher: dynamic programming over code points. */
function reference(pattern: string, input: string): boolean {
  const p = Array.from(pattern);
  const s = Array.from(input);
  const dp: boolean[][] = Array.from({ length: p.length + 1 }, () => Array(s.length + 1).fill(false));
  dp[0]![0] = true;
  for (let i = 1; i <= p.length; i++) {
    for (let j = 0; j <= s.length; j++) {
      const c = p[i - 1];
      if (c === "*") dp[i]![j] = dp[i - 1]![j]! || (j > 0 && dp[i]![j - 1]!);
      else if (j > 0) dp[i]![j] = dp[i - 1]![j - 1]! && (c === "?" || c === s[j - 1]);
    }
  }
  return dp[p.length]![s.length]!;
}

function seeded(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}
