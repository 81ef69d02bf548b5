import { createHash } from "node:crypto";

/**
 * An audit-export verifier written only from docs/audit.md, sharing no code with src/: if the
 * document and the implementation drift apart, the tests that use this fail.
 */
export function verifyExport(jsonl: string): { ok: true; count: number } | { ok: false; seq: number } {
  let prev = "0".repeat(64);
  let expectedSeq = 1;
  let count = 0;
  for (const text of jsonl.split("\n")) {
    if (!text) continue;
    const line = JSON.parse(text) as Record<string, unknown>;
    const seq = line.seq as number;
    if (seq !== expectedSeq || line.prev_hash !== prev) return { ok: false, seq: expectedSeq };
    const body = { ...line };
    delete body.hash;
    delete body.prev_hash;
    const hash = createHash("sha256")
      .update(prev + jcs(body), "utf8")
      .digest("hex");
    if (hash !== line.hash) return { ok: false, seq };
    prev = hash;
    expectedSeq++;
    count++;
  }
  return { ok: true, count };
}

/** RFC 8785-style canonical JSON for the values in an export (strings, integers, booleans, null). */
function jcs(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(",")}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${jcs((v as Record<string, unknown>)[k])}`)
    .join(",")}}`;
}
