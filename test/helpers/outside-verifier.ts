import { createHash, createPublicKey, verify } from "node:crypto";

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

/**
 * What a database superuser can do with docs/audit.md in hand: recompute seq, prev_hash and hash
 * of every line from the genesis, so that the chain verifies again after lines were changed,
 * added or removed.
 */
export function rechain(lines: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  let prev = "0".repeat(64);
  return lines.map((l, i) => {
    const body: Record<string, unknown> = { ...l, seq: i + 1 };
    delete body.hash;
    delete body.prev_hash;
    const hash = createHash("sha256")
      .update(prev + jcs(body), "utf8")
      .digest("hex");
    const line = { ...body, prev_hash: prev, hash };
    prev = hash;
    return line;
  });
}

/** RFC 8785-style canonical JSON for the values in an export (strings, integers, booleans, null). */
export function jcs(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(",")}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${jcs((v as Record<string, unknown>)[k])}`)
    .join(",")}}`;
}

/**
 * A checkpoint check written only from docs/audit.md ("Checkpoints"): the signed bytes are the
 * canonical JSON of head_hash, head_seq, key_id, purpose and signed_at; the key id is the first 16
 * hex digits of SHA-256 of the public key's DER (SubjectPublicKeyInfo).
 */
export function verifyCheckpoint(c: Record<string, unknown>, publicKeyPem: string): boolean {
  const key = createPublicKey(publicKeyPem);
  const keyId = createHash("sha256")
    .update(key.export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 16);
  const payload = jcs({
    purpose: "butler.audit.checkpoint.v1",
    head_seq: c.head_seq,
    head_hash: c.head_hash,
    signed_at: c.signed_at,
    key_id: c.key_id,
  });
  return (
    c.key_id === keyId &&
    verify(null, Buffer.from(payload, "utf8"), key, Buffer.from(String(c.signature), "base64"))
  );
}
