import { createHash } from "node:crypto";

/**
 * The audit chain, pure: canonical JSON, the hash of one line, and verification of a sequence of
 * lines. docs/audit.md specifies the same algorithm for outside tools; keep the two in step.
 */

/** `prev_hash` of the first event. */
export const GENESIS_HASH = "0".repeat(64);

/** The fields every exported line has (null when they do not apply to the event's type). */
export const CORE_FIELDS = [
  "seq",
  "event_id",
  "ts",
  "type",
  "agent",
  "project",
  "action",
  "resource",
  "decision",
  "reason",
  "http_status",
  "prev_hash",
  "hash",
] as const;

/** One audit event as exported: core fields plus the event's own details at the top level. */
export interface AuditLine {
  seq: number;
  event_id: string;
  ts: string;
  type: string;
  agent: string | null;
  project: string | null;
  action: string | null;
  resource: string | null;
  decision: string | null;
  reason: string | null;
  http_status: number | null;
  prev_hash: string;
  hash: string;
  [detail: string]: unknown;
}

/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, strings and numbers as
 * `JSON.stringify` writes them (this is RFC 8785 for the values Butler writes). Keys whose value is
 * `undefined` are left out; non-finite numbers and other non-JSON values are refused.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return quote(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError("canonical JSON cannot hold a non-finite number");
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      const keys = Object.keys(value).sort();
      const parts: string[] = [];
      for (const k of keys) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) continue;
        parts.push(`${JSON.stringify(k)}:${canonicalJson(v)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
  }
}

/** Texts without a character `JSON.stringify` escapes (`"`, `\\`, controls, surrogates). */
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/**
 * `JSON.stringify(s)` for a string. Most texts hold no character JSON escapes, and for those the
 * quotes around them are the same string at under half the cost (every audit line has about
 * twenty).
 */
function quote(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** `hash = sha256_hex(prev_hash + canonical_json(line without prev_hash and hash))`. */
export function hashLine(prevHash: string, body: Record<string, unknown>): string {
  const { prev_hash: _p, hash: _h, ...rest } = body;
  return createHash("sha256").update(prevHash).update(canonicalJson(rest)).digest("hex");
}

/** What is wrong at the first broken link of a chain. */
export interface ChainBreak {
  seq: number;
  problem: string;
}

/**
 * Verifies lines one at a time, in order, so that a chain of any length is checked in constant
 * memory. Start it at the genesis, or after a known-good line.
 */
export class ChainVerifier {
  #prevHash: string;
  #nextSeq: number;
  #count = 0;
  #broken: ChainBreak | undefined;

  constructor(after: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }) {
    this.#prevHash = after.hash;
    this.#nextSeq = after.seq + 1;
  }

  /** Checks the next line. Returns the break, if this line is (or an earlier one was) broken. */
  push(line: AuditLine): ChainBreak | undefined {
    if (this.#broken) return this.#broken;
    if (line.seq !== this.#nextSeq) {
      return this.#fail(
        this.#nextSeq,
        `expected sequence number ${this.#nextSeq}, found ${line.seq}: events are missing or out of order`,
      );
    }
    if (line.prev_hash !== this.#prevHash) {
      return this.#fail(line.seq, `prev_hash does not match the hash of event ${line.seq - 1}`);
    }
    const expected = hashLine(line.prev_hash, line);
    if (line.hash !== expected) {
      return this.#fail(
        line.seq,
        "the event's content does not match its hash: it was changed after it was written",
      );
    }
    this.#prevHash = line.hash;
    this.#nextSeq++;
    this.#count++;
    return undefined;
  }

  #fail(seq: number, problem: string): ChainBreak {
    this.#broken = { seq, problem };
    return this.#broken;
  }

  get broken(): ChainBreak | undefined {
    return this.#broken;
  }
  /** Lines verified so far. */
  get count(): number {
    return this.#count;
  }
  /** Sequence number and hash of the last verified line. */
  get last(): { seq: number; hash: string } {
    return { seq: this.#nextSeq - 1, hash: this.#prevHash };
  }
}
