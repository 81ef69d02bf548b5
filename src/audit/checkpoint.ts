import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { err, ok, type Result } from "../result.js";
import { type AuditLine, type ChainBreak, ChainVerifier, canonicalJson } from "./chain.js";

/**
 * Signed checkpoints of the audit chain's head, pure: the signed payload, signing and checking one
 * checkpoint, and a verifier that checks a stream of lines against the checkpoints in it and
 * against checkpoints kept outside the database. docs/audit.md specifies the same payload for
 * outside tools; keep the two in step.
 */

/** The audit event that carries a checkpoint in the log itself. */
export const CHECKPOINT_TYPE = "audit.checkpoint";
/** What the signature is for (so that a signature over these bytes means nothing else). */
export const CHECKPOINT_PURPOSE = "butler.audit.checkpoint.v1";

/** One checkpoint: event `head_seq` of the chain has hash `head_hash`, signed at `signed_at`. */
export interface Checkpoint {
  head_seq: number;
  head_hash: string;
  /** UTC, RFC 3339 with milliseconds. */
  signed_at: string;
  /** First 16 hex digits of SHA-256 of the signing key's public key (DER, SubjectPublicKeyInfo). */
  key_id: string;
  /** Ed25519 signature of `checkpointPayload`, base64. */
  signature: string;
}

/**
 * The bytes that are signed: canonical JSON (keys sorted, no whitespace) of
 * `{"head_hash","head_seq","key_id","purpose","signed_at"}`, as UTF-8.
 */
export function checkpointPayload(c: Omit<Checkpoint, "signature">): string {
  // Written out in canonical order: the fields are a hex string, an integer, a hex string, a
  // constant and a timestamp, none of which JSON.stringify escapes differently from JCS.
  return `{"head_hash":${JSON.stringify(c.head_hash)},"head_seq":${c.head_seq},"key_id":${JSON.stringify(c.key_id)},"purpose":"${CHECKPOINT_PURPOSE}","signed_at":${JSON.stringify(c.signed_at)}}`;
}

/** A checkpoint as one line of a checkpoint file (and the body posted to a checkpoint URL): canonical JSON. */
export function checkpointLine(c: Checkpoint): string {
  return canonicalJson({
    head_seq: c.head_seq,
    head_hash: c.head_hash,
    signed_at: c.signed_at,
    key_id: c.key_id,
    signature: c.signature,
  });
}

/** The key id of an Ed25519 public key. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 16);
}

/** The private half of a checkpoint key: signs, and never shows itself. */
export interface SigningKey {
  keyId: string;
  publicKey: KeyObject;
  /** The public key as PEM (SubjectPublicKeyInfo), what verifiers are given. */
  publicKeyPem: string;
  sign(payload: string): string;
}

/** A public key that checks checkpoints. */
export interface VerifyingKey {
  keyId: string;
  publicKey: KeyObject;
}

/** Reads an Ed25519 private key from PEM (PKCS#8). The error says why it is not one. */
export function signingKeyFromPem(pem: string): Result<SigningKey> {
  if (!/-----BEGIN PRIVATE KEY-----/.test(pem)) {
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem))
      return err("it is encrypted; Butler needs an unencrypted key file (protect it with file permissions)");
    if (/-----BEGIN PUBLIC KEY-----/.test(pem))
      return err("it holds a public key; give the private key (butler audit keygen writes both)");
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
      return err("it is not in PKCS#8 form (-----BEGIN PRIVATE KEY-----); make one with butler audit keygen");
    return err("it holds no PEM private key (-----BEGIN PRIVATE KEY-----)");
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (e) {
    return err(`it cannot be read as a private key (${(e as Error).message.split("\n")[0]})`);
  }
  if (key.asymmetricKeyType !== "ed25519")
    return err(
      `it holds an ${key.asymmetricKeyType ?? "unknown"} key; checkpoints are signed with Ed25519 (make one with butler audit keygen)`,
    );
  const publicKey = createPublicKey(key);
  return ok({
    keyId: keyIdOf(publicKey),
    publicKey,
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    sign: (payload) => sign(null, Buffer.from(payload, "utf8"), key).toString("base64"),
  });
}

/** Reads an Ed25519 public key from PEM (SubjectPublicKeyInfo). */
export function verifyingKeyFromPem(pem: string): Result<VerifyingKey> {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
    return err(
      "it holds a private key; give the public key (butler audit keygen wrote it next to the private key, as .pub)",
    );
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem))
    return err("it holds no PEM public key (-----BEGIN PUBLIC KEY-----)");
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: "pem" });
  } catch (e) {
    return err(`it cannot be read as a public key (${(e as Error).message.split("\n")[0]})`);
  }
  if (key.asymmetricKeyType !== "ed25519")
    return err(`it holds an ${key.asymmetricKeyType ?? "unknown"} key; checkpoints are signed with Ed25519`);
  return ok({ keyId: keyIdOf(key), publicKey: key });
}

/** A new key pair for `butler audit keygen`: the private key as PKCS#8 PEM, the public as SPKI PEM. */
export function generateCheckpointKey(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** Signs the head `{seq, hash}` as of `at`. */
export function signCheckpoint(key: SigningKey, head: { seq: number; hash: string }, at: string): Checkpoint {
  const body = { head_seq: head.seq, head_hash: head.hash, signed_at: at, key_id: key.keyId };
  return { ...body, signature: key.sign(checkpointPayload(body)) };
}

const HEX64 = /^[0-9a-f]{64}$/;
const KEY_ID = /^[0-9a-f]{16}$/;
// 64 bytes of signature in base64 are 86 characters and two padding characters.
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Reads a checkpoint from a parsed JSON value (a line of the checkpoint file, or an event's fields). */
export function parseCheckpoint(v: unknown): Result<Checkpoint> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return err("not a JSON object");
  const o = v as Record<string, unknown>;
  if (typeof o.head_seq !== "number" || !Number.isSafeInteger(o.head_seq) || o.head_seq < 1)
    return err("head_seq must be a whole number of at least 1");
  if (typeof o.head_hash !== "string" || !HEX64.test(o.head_hash))
    return err("head_hash must be 64 lowercase hex digits");
  if (typeof o.signed_at !== "string" || !TIMESTAMP.test(o.signed_at))
    return err("signed_at must be a UTC timestamp like 2026-05-01T17:42:11.123Z");
  if (typeof o.key_id !== "string" || !KEY_ID.test(o.key_id))
    return err("key_id must be 16 lowercase hex digits");
  if (typeof o.signature !== "string" || !SIGNATURE.test(o.signature))
    return err("signature must be 64 bytes in base64");
  return ok({
    head_seq: o.head_seq,
    head_hash: o.head_hash,
    signed_at: o.signed_at,
    key_id: o.key_id,
    signature: o.signature,
  });
}

/** Checks a checkpoint's signature with the given keys; the error says what is wrong. */
export function checkSignature(c: Checkpoint, keys: ReadonlyMap<string, VerifyingKey>): string | undefined {
  const key = keys.get(c.key_id);
  if (!key)
    return `it is signed by key ${c.key_id}, which is not among the given public keys (${[...keys.keys()].join(", ") || "none"})`;
  const good = verify(
    null,
    Buffer.from(checkpointPayload(c), "utf8"),
    key.publicKey,
    Buffer.from(c.signature, "base64"),
  );
  return good ? undefined : `its signature does not verify under key ${c.key_id}: it was forged or altered`;
}

/** A checkpoint kept outside the database, with where it was read from (`file:line`). */
export interface ExternalCheckpoint {
  checkpoint: Checkpoint;
  source: string;
}

/** A problem found by the anchored verifier. */
export interface AnchorProblem {
  kind:
    | "chain" // the hash chain itself is broken
    | "mismatch" // a checkpoint no longer matches the event it covers
    | "forged" // a checkpoint's signature is bad or by an unknown key
    | "malformed" // a checkpoint event whose fields are not a checkpoint
    | "missing"; // a checkpoint covers an event that is not there (removed, or the export was cut)
  /** Sequence number the problem is at. */
  seq: number;
  message: string;
  /** The checkpoint concerned: `file:line`, or `event <seq>` for one in the log. */
  checkpoint?: string | undefined;
  /** Where the change lies, when a checkpoint shows that something changed. */
  range?: { from: number; to: number } | undefined;
}

export interface AnchorReport {
  ok: boolean;
  /** Lines read. */
  count: number;
  /** The hash chain: intact through `verifiedThrough`, broken at `break`. */
  verifiedThrough: number;
  break: ChainBreak | undefined;
  /** Last sequence number read. */
  lastSeq: number;
  checkpoints: { inLog: number; external: number; matched: number };
  /**
   * Highest sequence number covered by a checkpoint that matches (0 when none): events 1..this are
   * exactly as they were when the key signed.
   */
  anchoredThrough: number;
  /** The checkpoint that anchors `anchoredThrough`. */
  anchoredBy: string | undefined;
  /** Events after the last matching checkpoint: chained, but nothing outside shows they are the originals. */
  unanchored: { from: number; to: number } | undefined;
  problems: AnchorProblem[];
}

/**
 * Verifies a chain of lines, in order and in constant memory (apart from the external
 * checkpoints), and checks every checkpoint: each `audit.checkpoint` event in the chain (its
 * signature, and that it covers the event just before it) and each external checkpoint (its
 * signature, and that the event at its `head_seq` has its `head_hash`).
 */
export class AnchoredVerifier {
  readonly #keys: ReadonlyMap<string, VerifyingKey>;
  readonly #chain = new ChainVerifier();
  /** External checkpoints not yet reached, by ascending head_seq. */
  readonly #pending: ExternalCheckpoint[];
  readonly #external: number;
  #inLog = 0;
  #matched = 0;
  #count = 0;
  #lastSeq = 0;
  #anchoredThrough = 0;
  #anchoredBy: string | undefined;
  #firstMismatch = false;
  readonly #problems: AnchorProblem[] = [];

  /** What is read, in messages: "the log" or "the export". */
  readonly #subject: string;

  constructor(
    keys: readonly VerifyingKey[],
    external: readonly ExternalCheckpoint[] = [],
    subject = "the log",
  ) {
    this.#subject = subject;
    this.#keys = new Map(keys.map((k) => [k.keyId, k]));
    this.#pending = [...external].sort((a, b) => a.checkpoint.head_seq - b.checkpoint.head_seq);
    this.#external = external.length;
    // External checkpoints are checked against the event they cover when it is read; a forged one
    // is reported now and never counts as matching.
    for (let i = this.#pending.length - 1; i >= 0; i--) {
      const x = this.#pending[i]!;
      const bad = checkSignature(x.checkpoint, this.#keys);
      if (bad) {
        this.#problems.push({
          kind: "forged",
          seq: x.checkpoint.head_seq,
          checkpoint: x.source,
          message: `checkpoint ${x.source} (sequence ${x.checkpoint.head_seq}) is refused: ${bad}`,
        });
        this.#pending.splice(i, 1);
      }
    }
  }

  push(line: AuditLine): void {
    this.#count++;
    this.#chain.push(line);
    const seq = line.seq;
    this.#lastSeq = seq;
    // External checkpoints of events this stream skipped (the chain check reports the gap too).
    while (this.#pending.length > 0 && this.#pending[0]!.checkpoint.head_seq < seq) {
      const x = this.#pending.shift()!;
      this.#problem({
        kind: "missing",
        seq: x.checkpoint.head_seq,
        checkpoint: x.source,
        message: `checkpoint ${x.source} covers sequence ${x.checkpoint.head_seq}, which is not in ${this.#subject}`,
      });
    }
    while (this.#pending.length > 0 && this.#pending[0]!.checkpoint.head_seq === seq) {
      const x = this.#pending.shift()!;
      this.#compare(x.checkpoint, x.source, line);
    }
    if (line.type === CHECKPOINT_TYPE) this.#inLogCheckpoint(line);
  }

  #inLogCheckpoint(line: AuditLine): void {
    this.#inLog++;
    const source = `event ${line.seq}`;
    const parsed = parseCheckpoint(line);
    if (!parsed.ok) {
      this.#problem({
        kind: "malformed",
        seq: line.seq,
        checkpoint: source,
        message: `the checkpoint event at sequence ${line.seq} is not a checkpoint: ${parsed.error}`,
        range: { from: this.#anchoredThrough + 1, to: line.seq },
      });
      return;
    }
    const c = parsed.value;
    const bad = checkSignature(c, this.#keys);
    if (bad) {
      this.#problem({
        kind: "forged",
        seq: line.seq,
        checkpoint: source,
        message: `the checkpoint event at sequence ${line.seq} is refused: ${bad}`,
        range: { from: this.#anchoredThrough + 1, to: line.seq },
      });
      return;
    }
    // Butler writes a checkpoint under the chain head's lock, right after the event it covers:
    // its head is its own predecessor.
    if (c.head_seq !== line.seq - 1) {
      this.#problem({
        kind: "mismatch",
        seq: line.seq,
        checkpoint: source,
        message: `the checkpoint event at sequence ${line.seq} (signed ${c.signed_at}) covers sequence ${c.head_seq}, but Butler writes a checkpoint right after the event it covers: events were inserted or removed before it`,
        range: { from: this.#anchoredThrough + 1, to: line.seq - 1 },
      });
      return;
    }
    this.#compare(c, source, { seq: c.head_seq, hash: line.prev_hash });
  }

  /** Compares a checkpoint with the event it covers (`hash` as stored in that line). */
  #compare(c: Checkpoint, source: string, event: { seq: number; hash: string }): void {
    if (event.hash === c.head_hash) {
      this.#matched++;
      // A checkpoint after the chain broke anchors nothing the chain check has not refuted.
      if (!this.#chain.broken || this.#chain.broken.seq > event.seq) {
        if (event.seq > this.#anchoredThrough) {
          this.#anchoredThrough = event.seq;
          this.#anchoredBy = `${source} (signed ${c.signed_at})`;
        }
      }
      return;
    }
    const from = this.#anchoredThrough + 1;
    this.#problem({
      kind: "mismatch",
      seq: event.seq,
      checkpoint: source,
      range: { from, to: event.seq },
      message: `checkpoint ${source} (signed ${c.signed_at}) no longer matches: it signed hash ${c.head_hash.slice(0, 16)}… for event ${event.seq}, which is now ${event.hash.slice(0, 16)}…; ${
        from > 1 ? `events 1..${from - 1} still match checkpoint ${this.#anchoredBy}, so ` : ""
      }the change lies in sequence ${from}..${event.seq}`,
    });
  }

  #problem(p: AnchorProblem): void {
    if (p.kind === "mismatch") {
      if (this.#firstMismatch) return;
      this.#firstMismatch = true;
    }
    this.#problems.push(p);
  }

  /** Ends the stream: checkpoints beyond its end mean events were removed or cut off. */
  finish(): AnchorReport {
    const problems = [...this.#problems];
    const broken = this.#chain.broken;
    if (broken) problems.unshift({ kind: "chain", seq: broken.seq, message: broken.problem });
    if (this.#pending.length > 0) {
      const x = this.#pending.at(-1)!;
      const first = this.#pending[0]!;
      const last = this.#lastSeq;
      problems.push({
        kind: "missing",
        seq: x.checkpoint.head_seq,
        checkpoint: x.source,
        range: { from: last + 1, to: x.checkpoint.head_seq },
        message: `${this.#subject} ends at sequence ${last}, but checkpoint ${x.source} (signed ${x.checkpoint.signed_at}) covers sequence ${x.checkpoint.head_seq}${
          this.#pending.length > 1
            ? ` (and ${this.#pending.length - 1} more checkpoint${this.#pending.length > 2 ? "s" : ""} from sequence ${first.checkpoint.head_seq})`
            : ""
        }: events ${last + 1}..${x.checkpoint.head_seq} were removed or cut off`,
      });
    }
    problems.sort((a, b) => a.seq - b.seq);
    const last = this.#lastSeq;
    return {
      ok: problems.length === 0,
      count: this.#count,
      verifiedThrough: this.#chain.last.seq,
      break: broken,
      lastSeq: last,
      checkpoints: { inLog: this.#inLog, external: this.#external, matched: this.#matched },
      anchoredThrough: this.#anchoredThrough,
      anchoredBy: this.#anchoredBy,
      unanchored: last > this.#anchoredThrough ? { from: this.#anchoredThrough + 1, to: last } : undefined,
      problems,
    };
  }
}
