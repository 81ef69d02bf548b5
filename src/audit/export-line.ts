import { err, ok, type Result } from "../result.js";
import { type AuditLine, canonicalJson } from "./chain.js";

/**
 * Reads one line of an export. Besides being JSON, the line must be exactly the canonical JSON
 * Butler writes: the hash covers the canonical form of the parsed values, so a line written
 * differently (another key order, `1.0` for `1`, a number with more digits than a double holds)
 * could mean something else to another reader while hashing the same. Such a line is refused.
 */
export function parseExportLine(text: string): Result<AuditLine> {
  if (text.endsWith("\r"))
    return err(
      "ends with \\r: the file has CRLF line endings (converted after export?); Butler writes \\n only",
    );
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return err(`not JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return err("not a JSON object");
  const o = v as Record<string, unknown>;
  if (typeof o.seq !== "number" || !Number.isSafeInteger(o.seq)) return err("seq is not a whole number");
  if (typeof o.prev_hash !== "string" || typeof o.hash !== "string")
    return err("prev_hash and hash must be strings");
  const canonical = canonicalJson(o);
  if (canonical !== text)
    return err(`not written as Butler writes lines (canonical JSON): ${difference(text, canonical)}`);
  return ok(o as AuditLine);
}

function difference(text: string, canonical: string): string {
  let i = 0;
  while (i < text.length && text[i] === canonical[i]) i++;
  const around = (s: string) => JSON.stringify(s.slice(Math.max(0, i - 20), i + 20));
  return `at character ${i + 1} the line has ${around(text)} where canonical JSON has ${around(canonical)}`;
}
