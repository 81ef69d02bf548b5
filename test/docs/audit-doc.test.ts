import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { checkSignature, parseCheckpoint, verifyingKeyFromPem } from "../../src/audit/checkpoint.js";
import { verifyCheckpoint } from "../helpers/outside-verifier.js";

/**
 * Keeps docs/audit.md honest: its table of event types lists exactly the types Butler writes
 * (found in src/, so that a type added anywhere fails here until it is documented), and its
 * example checkpoint verifies as the document says.
 */

const DOC = readFileSync(new URL("../../docs/audit.md", import.meta.url), "utf8");
const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const SRC = fileURLToPath(new URL("../../src", import.meta.url));

function sources(dir: string): { file: string; text: string }[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sources(join(dir, e.name))
      : e.name.endsWith(".ts")
        ? [{ file: join(dir, e.name), text: readFileSync(join(dir, e.name), "utf8") }]
        : [],
  );
}

/** Dotted literals in a `type:` position in src/ that are not audit event types, and why. */
const NOT_EVENT_TYPES: Record<string, string> = {};

/**
 * Every audit event type in src/: each dotted lower-case string literal in the value of a `type:`
 * or `auditType:` member (`type: "grant.used"`, both arms of `type: allow ? "gateway.allowed" :
 * "gateway.denied"`, a union `type: "budget.exceeded" | "gateway.denied"`), and types built from
 * a template (`type: \`${channel}.request_rejected\``) by their suffix.
 */
function typesInSource(): { literal: Map<string, string>; suffixes: Map<string, string> } {
  const literal = new Map<string, string>();
  const suffixes = new Map<string, string>();
  const files = sources(SRC);
  // Constants that name a type (`export const CHECKPOINT_TYPE = "audit.checkpoint"`).
  const constants = new Map<string, string>();
  for (const { text } of files)
    for (const m of text.matchAll(/\bconst ([A-Z][A-Z0-9_]*)\s*=\s*"([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)"/g))
      constants.set(m[1]!, m[2]!);
  for (const { file, text } of files) {
    for (const member of text.matchAll(/\b(?:type|auditType)\s*:\s*((?:\$\{[^}]*\}|[^,;{}])*)/g)) {
      const value = member[1]!;
      const names = [
        ...[...value.matchAll(/"([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)"/g)].map((m) => m[1]!),
        ...[...value.matchAll(/\b([A-Z][A-Z0-9_]*)\b/g)].flatMap((m) => constants.get(m[1]!) ?? []),
      ];
      for (const name of names) if (!(name in NOT_EVENT_TYPES)) literal.set(name, file);
      for (const m of value.matchAll(/`\$\{[^}`]+\}\.([a-z][a-z0-9_]*)`/g)) suffixes.set(m[1]!, file);
    }
  }
  return { literal, suffixes };
}

/** Names in the first column of the event type table of docs/audit.md. */
function typesInDoc(): Set<string> {
  const lines = DOC.split("\n");
  const start = lines.findIndex((l) => /^\| type\s+\| extra fields/.test(l));
  expect(start, "docs/audit.md has a table whose header is | type | extra fields |").toBeGreaterThan(0);
  const names = new Set<string>();
  for (let i = start + 2; i < lines.length && lines[i]!.startsWith("|"); i++) {
    const first = lines[i]!.split("|")[1]!;
    for (const m of first.matchAll(/`([^`]+)`/g)) names.add(m[1]!);
  }
  return names;
}

describe("docs/audit.md lists every event type Butler writes", () => {
  const src = typesInSource();
  const doc = typesInDoc();

  test("every type in src/ is documented", () => {
    const missing = [...src.literal]
      .filter(([t]) => !doc.has(t))
      .map(([t, file]) => `${t} (${file.slice(SRC.length + 1)})`);
    expect(
      missing,
      "document these in docs/audit.md (or, if one is not an audit event type, add it to NOT_EVENT_TYPES here)",
    ).toEqual([]);
    for (const [suffix, file] of src.suffixes)
      expect(
        [...doc].some((t) => t.endsWith(`.${suffix}`)),
        `the types ending in .${suffix} (${file}) are documented`,
      ).toBe(true);
  });

  test("every documented type is still written", () => {
    const stale = [...doc].filter(
      (t) => !src.literal.has(t) && ![...src.suffixes.keys()].some((s) => t.endsWith(`.${s}`)),
    );
    expect(stale, "docs/audit.md lists types no code writes").toEqual([]);
  });

  test("the scan finds what it should (so that an empty scan cannot pass)", () => {
    for (const t of ["gateway.allowed", "gateway.denied", "audit.checkpoint", "credential.replaced"])
      expect(src.literal.has(t), t).toBe(true);
    expect(src.suffixes.has("request_rejected")).toBe(true);
  });
});

describe("docs/audit.md checkpoints", () => {
  const example = /```json\n(\{"head_hash".*\})\n```/.exec(DOC)?.[1];
  const pem = /```\n(-----BEGIN PUBLIC KEY-----\n[^`]+-----END PUBLIC KEY-----\n)```/.exec(DOC)?.[1];

  test("the example checkpoint verifies under the example key, by the document's rules and by Butler's", () => {
    expect(example).toBeDefined();
    expect(pem).toBeDefined();
    const c = JSON.parse(example!);
    expect(verifyCheckpoint(c, pem!)).toBe(true);
    expect(verifyCheckpoint({ ...c, head_seq: c.head_seq + 1 }, pem!)).toBe(false);
    const parsed = parseCheckpoint(c);
    const key = verifyingKeyFromPem(pem!);
    if (!parsed.ok || !key.ok) throw new Error("the example does not parse");
    expect(checkSignature(parsed.value, new Map([[key.value.keyId, key.value]]))).toBeUndefined();
  });

  test("every checkpoint setting is documented here and in the README", () => {
    const config = readFileSync(join(SRC, "config.ts"), "utf8");
    const settings = [...new Set(config.match(/BUTLER_AUDIT_[A-Z_]+/g))];
    expect(settings.length).toBeGreaterThanOrEqual(5);
    for (const s of settings) {
      expect(DOC, s).toContain(`| \`${s}\``);
      expect(README, s).toContain(`\`${s}\``);
    }
  });
});
