import { generateKeyPairSync, sign } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAuditLog, readLines } from "../../src/audit/audit-log.js";
import { type AuditLine, CORE_FIELDS } from "../../src/audit/chain.js";
import {
  AnchoredVerifier,
  CHECKPOINT_TYPE,
  type Checkpoint,
  checkpointLine,
  checkpointPayload,
  signingKeyFromPem,
  verifyingKeyFromPem,
} from "../../src/audit/checkpoint.js";
import { httpCheckpointSink, openCheckpointFile } from "../../src/audit/checkpoint-sinks.js";
import { type CheckpointSink, createCheckpointer } from "../../src/audit/checkpointer.js";
import { story } from "../../src/audit/story.js";
import { loadConfig } from "../../src/config.js";
import { type Database, openDatabase } from "../../src/db/client.js";
import { auditEvents, auditHead } from "../../src/db/schema.js";
import { createLogger } from "../../src/logger.js";
import { startServer } from "../../src/main.js";
import type { Result } from "../../src/result.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { jcs, rechain, verifyCheckpoint, verifyExport } from "../helpers/outside-verifier.js";
import {
  type CliResult,
  createTestEnv,
  runCli,
  startTestServer,
  type TestServer,
} from "../helpers/server.js";

/**
 * Issue 12 item 6: a database superuser who changes one audit event and recomputes every later
 * hash and the chain head passed `butler audit verify`. Signed checkpoints of the head, kept in
 * the log and outside the database, make that rewrite (and a removed tail) detectable.
 */

const log = createLogger("silent");
const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };

type Line = Record<string, unknown> & { seq: number; type: string; hash: string; prev_hash: string };

const parse = (jsonl: string): Line[] =>
  jsonl
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Line);
const toJsonl = (lines: readonly Record<string, unknown>[]) => lines.map((l) => `${jcs(l)}\n`).join("");

/**
 * The superuser: with the append-only trigger disabled, replaces every stored event with `lines`
 * and moves the chain head to the last of them (all in SQL, as anyone with the database could).
 */
async function superuserWrite(database: Database, lines: readonly Record<string, unknown>[]): Promise<void> {
  await database.db.transaction(async (tx) => {
    await tx.execute(sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`);
    await tx.execute(sql`DELETE FROM audit_events`);
    for (const l of lines) {
      const details = Object.fromEntries(
        Object.entries(l).filter(([k]) => !(CORE_FIELDS as readonly string[]).includes(k)),
      );
      await tx.insert(auditEvents).values({
        seq: l.seq as number,
        eventId: l.event_id as string,
        ts: new Date(l.ts as string),
        type: l.type as string,
        agent: l.agent as string | null,
        project: l.project as string | null,
        action: l.action as string | null,
        resource: l.resource as string | null,
        decision: l.decision as string | null,
        reason: l.reason as string | null,
        httpStatus: l.http_status as number | null,
        details,
        prevHash: l.prev_hash as string,
        hash: l.hash as string,
      });
    }
    const last = lines.at(-1)!;
    await tx
      .update(auditHead)
      .set({ seq: last.seq as number, hash: last.hash as string })
      .where(eq(auditHead.id, 1));
    await tx.execute(sql`ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only`);
  });
}

function unwrap<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

/** A sink that keeps what it is given. */
function memorySink(): CheckpointSink & { got: Checkpoint[] } {
  const got: Checkpoint[] = [];
  return {
    name: "memory",
    got,
    write: (c) => {
      got.push(c);
    },
    idle: async () => {},
    close: async () => {},
  };
}

/** A key pair made the way an operator would: with `butler audit keygen`. */
async function keygen(dir: string, name: string): Promise<{ file: string; pub: string; keyId: string }> {
  const file = join(dir, name);
  const r = await runCli(["audit", "keygen", "--out", file, "--json"], {});
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout);
  return { file, pub: out.public_key_file, keyId: out.key_id };
}

describe(`the superuser rewrite, end to end through butler serve (${ENGINE})`, () => {
  let dir: string;
  let s: TestServer;
  let key: { file: string; pub: string; keyId: string };
  let sinkFile: string;
  let original: Line[];
  let exportText: string;
  let plainEnv: Record<string, string>;
  let throughServer: CliResult;
  const cli = (argv: string[], env?: Record<string, string>): Promise<CliResult> =>
    runCli(argv, env ?? s.env);

  /** Opens the stopped server's database as its owner would, runs `fn`, and closes it again. */
  async function asSuperuser(fn: (db: Database) => Promise<void>): Promise<void> {
    const db = await openDatabase(loadConfig(s.env).database, log);
    try {
      await fn(db);
    } finally {
      await db.close();
    }
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-anchor-"));
    key = await keygen(dir, "signing.pem");
    sinkFile = join(dir, "checkpoints.jsonl");
    s = await startTestServer({
      env: {
        BUTLER_AUDIT_SIGNING_KEY_FILE: key.file,
        BUTLER_AUDIT_CHECKPOINT_FILE: sinkFile,
        BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS: "5",
        BUTLER_AUDIT_CHECKPOINT_EVERY_SECONDS: "3600",
      },
    });
    const token = await s.agentToken("billing-reconciler-1", "project-billing");
    for (let i = 0; i < 24; i++)
      await s.authorize(token, { ...STRIPE, resource: `stripe.com/v1/charges/ch_${i}` });
    await s.server.services.checkpointer!.idle();
    throughServer = await cli(["audit", "verify", "--checkpoints", sinkFile, "--public-key", key.pub]);
    await s.stop();
    exportText = (await cli(["audit", "export"])).stdout;
    original = parse(exportText);
    plainEnv = Object.fromEntries(Object.entries(s.env).filter(([k]) => !k.startsWith("BUTLER_AUDIT_")));
  });
  afterAll(async () => {
    await s?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test("checkpoints were written into the log and to the file, every 5 events and at shutdown", async () => {
    const inLog = original.filter((l) => l.type === CHECKPOINT_TYPE);
    const inFile = parse(await readFile(sinkFile, "utf8"));
    expect(inLog.length).toBeGreaterThanOrEqual(5);
    // The same checkpoints, in the same order: the file holds exactly the fields that are signed.
    expect(inFile).toEqual(
      inLog.map((l) => ({
        head_seq: l.head_seq,
        head_hash: l.head_hash,
        signed_at: l.signed_at,
        key_id: l.key_id,
        signature: l.signature,
      })),
    );
    const pem = await readFile(key.pub, "utf8");
    for (const l of inLog) {
      // Each covers the event right before it, and verifies with a check written from the docs.
      expect(l).toMatchObject({
        head_seq: l.seq - 1,
        head_hash: l.prev_hash,
        key_id: key.keyId,
        ts: l.signed_at,
      });
      expect(verifyCheckpoint(l, pem)).toBe(true);
      expect(story(l as unknown as AuditLine)).toBe(
        `checkpoint: the chain up to sequence ${l.seq - 1} signed with key ${key.keyId}`,
      );
    }
    // Between two checkpoints, at least 5 other events (the cadence), and the last one is the
    // shutdown's, covering the last event before it.
    const at = inLog.map((l) => l.seq);
    for (let i = 1; i < at.length - 1; i++) expect(at[i]! - at[i - 1]! - 1).toBeGreaterThanOrEqual(5);
    expect(original.at(-1)).toMatchObject({ type: CHECKPOINT_TYPE });
    expect((await stat(sinkFile)).mode & 0o777).toBe(0o600);
  });

  test("while the server runs, verify reads the log through its admin API and checks it the same way", () => {
    expect(throughServer.stderr).toBe("");
    expect(throughServer.code).toBe(0);
    expect(throughServer.stdout).toMatch(/^audit chain verified: \d+ events/);
    expect(throughServer.stdout).toMatch(
      /checkpoints: \d+ in the log, \d+ from checkpoint files; \d+ match; signatures valid/,
    );
    expect(throughServer.stdout).toMatch(/anchored through sequence \d+ by checkpoint/);
  });

  test("the intact log verifies against its checkpoints, anchored up to the last one", async () => {
    const r = await cli(["audit", "verify", "--checkpoints", sinkFile, "--public-key", key.pub]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const last = original.at(-1)!;
    expect(r.stdout).toContain(`audit chain verified: ${original.length} events`);
    expect(r.stdout).toContain(`anchored through sequence ${last.seq - 1} by checkpoint`);
    expect(r.stdout).toContain(`not anchored: sequence ${last.seq}..${last.seq}`);
  });

  test("ATTACK: one event changed, every later hash and the head recomputed", async () => {
    const target = original.find((l) => l.type === "gateway.denied" && l.seq > 10)!;
    const forged = rechain(
      original.map((l) => (l.seq === target.seq ? { ...l, reason: "nothing to see" } : l)),
    );
    await asSuperuser((db) => superuserWrite(db, forged));

    // Without checkpoints the rewrite passes: that is the documented limit of a hash chain.
    const plain = await cli(["audit", "verify"], plainEnv);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toContain("checkpoints not checked");

    // With the checkpoint file, it fails, naming the first checkpoint that no longer matches and
    // where the change lies: after the last checkpoint that still matches, up to this one.
    const heads = original.filter((l) => l.type === CHECKPOINT_TYPE).map((l) => l.head_seq as number);
    const firstBad = heads.find((h) => h >= target.seq)!;
    const lastGood = heads.filter((h) => h < target.seq).at(-1)!;
    const fileLine = heads.indexOf(firstBad) + 1;
    const r = await cli(["audit", "verify", "--checkpoints", sinkFile, "--public-key", key.pub]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("audit chain verified"); // the chain itself is consistent again…
    expect(r.stdout).toContain("audit chain does NOT match its checkpoints"); // …but not what was signed
    expect(r.stdout).toContain(`checkpoint ${sinkFile}:${fileLine} (signed `);
    expect(r.stdout).toContain(`no longer matches: it signed hash`);
    expect(r.stdout).toContain(`the change lies in sequence ${lastGood + 1}..${firstBad}`);
    expect(target.seq).toBeGreaterThan(lastGood);
    expect(target.seq).toBeLessThanOrEqual(firstBad);

    // The checkpoints in the log alone catch it too (the configured key is the default).
    const inLog = await cli(["audit", "verify", "--json"]);
    expect(inLog.code).toBe(1);
    const report = JSON.parse(inLog.stdout);
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toContain(`checkpoint event ${firstBad + 1} (signed`);
    expect(report.problems[0]).toContain(`the change lies in sequence ${lastGood + 1}..${firstBad}`);

    await asSuperuser((db) => superuserWrite(db, original));
    expect((await cli(["audit", "verify", "--checkpoints", sinkFile, "--public-key", key.pub])).code).toBe(0);
  });

  test("ATTACK: the same, and the checkpoint events removed from the log as well", async () => {
    const target = original.find((l) => l.type === "gateway.denied" && l.seq > 10)!;
    const forged = rechain(
      original
        .filter((l) => l.type !== CHECKPOINT_TYPE)
        .map((l) => (l.seq === target.seq ? { ...l, decision: "ALLOW" } : l)),
    );
    await asSuperuser((db) => superuserWrite(db, forged));

    // With nothing left in the log to contradict it, only the file outside the database can.
    const inLogOnly = await cli(["audit", "verify"]);
    expect(inLogOnly.code).toBe(0);
    expect(inLogOnly.stdout).toContain("anchored: nothing");
    const r = await cli(["audit", "verify", "--checkpoints", sinkFile, "--public-key", key.pub]);
    expect(r.code).toBe(1);
    // The first checkpoint still matches (no checkpoint event came before the event it covers)…
    const heads = original.filter((l) => l.type === CHECKPOINT_TYPE).map((l) => l.head_seq as number);
    expect(r.stdout).toContain(`checkpoint ${sinkFile}:2 (signed `);
    expect(r.stdout).toContain(`the change lies in sequence ${heads[0]! + 1}..${heads[1]}`);

    await asSuperuser((db) => superuserWrite(db, original));
  });

  test("ATTACK: the newest events removed and the head moved back to match", async () => {
    const heads = original.filter((l) => l.type === CHECKPOINT_TYPE).map((l) => l.head_seq as number);
    const keep = heads.at(-2)! - 2;
    await asSuperuser((db) => superuserWrite(db, original.slice(0, keep)));
    expect((await cli(["audit", "verify"], plainEnv)).code).toBe(0);
    const r = await cli(["audit", "verify", "--checkpoints", sinkFile, "--public-key", key.pub]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `the log ends at sequence ${keep}, but checkpoint ${sinkFile}:${heads.length} (signed `,
    );
    expect(r.stdout).toContain(`covers sequence ${heads.at(-1)}`);
    expect(r.stdout).toContain(`events ${keep + 1}..${heads.at(-1)} were removed or cut off`);
    await asSuperuser((db) => superuserWrite(db, original));
  });

  describe("verify-export: an export checked offline", () => {
    let n = 0;
    async function verifyExportCli(text: string, extra: string[] = []): Promise<CliResult> {
      const file = join(dir, `export-${n++}.jsonl`);
      await writeFile(file, text);
      return runCli(["audit", "verify-export", file, "--public-key", key.pub, ...extra], {});
    }
    const regular = () => original.filter((l) => l.type !== CHECKPOINT_TYPE && l.seq > 3);

    test("the intact export verifies, and says honestly what its last lines are", async () => {
      expect(verifyExport(exportText)).toEqual({ ok: true, count: original.length });
      const r = await verifyExportCli(exportText, ["--checkpoints", sinkFile]);
      expect(r).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout).toContain(`export verified: ${original.length} events`);
      expect(r.stdout).toContain(`anchored through sequence ${original.length - 1}`);
      expect(r.stdout).toContain(
        `not anchored: sequence ${original.length}..${original.length} follow the last matching checkpoint`,
      );
    });

    test("an edited line", async () => {
      const t = regular()[5]!;
      const text = toJsonl(
        original.map((l) => (l.seq === t.seq ? { ...l, resource: "stripe.com/v1/refunds" } : l)),
      );
      const r = await verifyExportCli(text);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        `sequence ${t.seq}: the event's content does not match its hash: it was changed after it was written`,
      );
    });

    test("a removed line", async () => {
      const t = regular()[5]!;
      const r = await verifyExportCli(toJsonl(original.filter((l) => l.seq !== t.seq)));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`sequence ${t.seq}: expected sequence number ${t.seq}, found ${t.seq + 1}`);
    });

    test("a reordered line", async () => {
      const lines = [...original];
      const i = regular()[5]!.seq - 1;
      [lines[i], lines[i + 1]] = [lines[i + 1]!, lines[i]!];
      const r = await verifyExportCli(toJsonl(lines));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`sequence ${i + 1}: expected sequence number ${i + 1}, found ${i + 2}`);
    });

    test("a whole rewritten export (recomputed hashes) is caught by the checkpoint lines in it", async () => {
      const t = regular()[8]!;
      const forged = rechain(original.map((l) => (l.seq === t.seq ? { ...l, reason: "fine" } : l)));
      const r = await verifyExportCli(toJsonl(forged));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("export FAILED verification");
      expect(r.stdout).toMatch(/checkpoint event \d+ \(signed [^)]+\) no longer matches/);
    });

    test("a tail cut off that a checkpoint file covers", async () => {
      const heads = original.filter((l) => l.type === CHECKPOINT_TYPE).map((l) => l.head_seq as number);
      const cut = heads.at(-2)! - 1;
      const r = await verifyExportCli(toJsonl(original.slice(0, cut)), ["--checkpoints", sinkFile]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        `the export ends at sequence ${cut}, but checkpoint ${sinkFile}:${heads.length} (signed `,
      );
      expect(r.stdout).toContain(`and 1 more checkpoint from sequence ${heads.at(-2)}`);
      expect(r.stdout).toContain(`events ${cut + 1}..${heads.at(-1)} were removed or cut off`);
    });

    test("a tail cut off after the last checkpoint cannot be detected, and the output says so", async () => {
      // The newest checkpoint with two events after it that come before the shutdown's checkpoint
      // (the cadence's last one can fall right before the shutdown's: then the one before it).
      const shutdown = original.at(-1)!.seq;
      const lastCheckpoint = original
        .filter((l) => l.type === CHECKPOINT_TYPE && l.seq + 2 < shutdown)
        .at(-1)!;
      const cut = lastCheckpoint.seq + 2;
      const r = await verifyExportCli(toJsonl(original.slice(0, cut)));
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`anchored through sequence ${lastCheckpoint.seq - 1}`);
      expect(r.stdout).toContain(
        `not anchored: sequence ${lastCheckpoint.seq}..${cut} follow the last matching checkpoint. They chain correctly, but a rewrite of them (with recomputed hashes) or events cut off the end cannot be detected without a later checkpoint`,
      );
    });

    test("a file cut off in the middle of a line", async () => {
      const text = toJsonl(original.slice(0, 10));
      const r = await verifyExportCli(text.slice(0, text.length - 30));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        "line 10: the file ends in the middle of this line (no newline after it): the export was cut off after sequence 9",
      );
    });

    test("a line that is not exactly as Butler writes it (same values, another text)", async () => {
      const lines = exportText.split("\n");
      lines[2] = JSON.stringify(JSON.parse(lines[2]!), null, 1).replaceAll("\n", "");
      const r = await verifyExportCli(lines.join("\n"));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        "line 3: not written as Butler writes lines (canonical JSON): at character 2",
      );
    });

    test("a file converted to CRLF line endings", async () => {
      const r = await verifyExportCli(exportText.replaceAll("\n", "\r\n"));
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        "line 1: ends with \\r: the file has CRLF line endings (converted after export?); Butler writes \\n only",
      );
    });

    test("FORGED: checkpoints signed with another key are refused", async () => {
      const other = await keygen(dir, `other-${n++}.pem`);
      const otherKey = signingKeyFromPem(await readFile(other.file, "utf8"));
      if (!otherKey.ok) throw new Error(otherKey.error);
      const ev = original[20]!;
      const body = { head_seq: ev.seq, head_hash: ev.hash, signed_at: "2026-05-01T00:00:00.000Z" };
      const forgedFile = join(dir, `forged-${n++}.jsonl`);
      // Signed by a key nobody gave us…
      const byOther = { ...body, key_id: otherKey.value.keyId };
      // …and under our key id, with a signature our key never made.
      const underOurId = { ...body, key_id: key.keyId };
      await writeFile(
        forgedFile,
        `${checkpointLine({ ...byOther, signature: otherKey.value.sign(checkpointPayload(byOther)) })}\n${checkpointLine({ ...underOurId, signature: otherKey.value.sign(checkpointPayload(underOurId)) })}\n`,
      );
      const r = await verifyExportCli(exportText, ["--checkpoints", forgedFile]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        `checkpoint ${forgedFile}:1 (sequence ${ev.seq}) is refused: it is signed by key ${otherKey.value.keyId}, which is not among the given public keys (${key.keyId})`,
      );
      expect(r.stdout).toContain(
        `checkpoint ${forgedFile}:2 (sequence ${ev.seq}) is refused: its signature does not verify under key ${key.keyId}: it was forged or altered`,
      );

      // A rewritten export whose checkpoint lines the forger re-signed with their own key.
      const t = regular()[8]!;
      let chain = rechain(original.map((l) => (l.seq === t.seq ? { ...l, reason: "fine" } : l)));
      for (let i = 0; i < chain.length; i++) {
        if (chain[i]!.type !== CHECKPOINT_TYPE) continue;
        const prev = chain[i - 1]!;
        const body = {
          head_seq: prev.seq as number,
          head_hash: prev.hash as string,
          signed_at: chain[i]!.signed_at as string,
          key_id: otherKey.value.keyId,
        };
        chain[i] = { ...chain[i]!, ...body, signature: otherKey.value.sign(checkpointPayload(body)) };
        chain = rechain(chain);
      }
      const r2 = await verifyExportCli(toJsonl(chain));
      expect(r2.code).toBe(1);
      expect(r2.stdout).toMatch(
        new RegExp(
          `the checkpoint event at sequence \\d+ is refused: it is signed by key ${otherKey.value.keyId}`,
        ),
      );
      // The same export checked with the forger's public key instead verifies: which key to trust
      // comes from outside the export, never from it.
      const r3 = await runCli(
        ["audit", "verify-export", join(dir, `export-${n - 1}.jsonl`), "--public-key", other.pub],
        {},
      );
      expect(r3.code).toBe(0);
    });

    test("bad arguments are clear errors", async () => {
      const file = join(dir, "e.jsonl");
      await writeFile(file, exportText);
      expect(await runCli(["audit", "verify-export", file, "--public-key", key.file], {})).toMatchObject({
        code: 1,
        stderr: `butler: --public-key ${key.file}: it holds a private key; give the public key (butler audit keygen wrote it next to the private key, as .pub)\n`,
      });
      expect(await runCli(["audit", "verify-export", file, "--checkpoints", sinkFile], {})).toMatchObject({
        code: 2,
      });
      expect(
        (await runCli(["audit", "verify-export", join(dir, "missing.jsonl"), "--public-key", key.pub], {}))
          .stderr,
      ).toContain("missing.jsonl: cannot read it: ENOENT");
    });
  });
});

describe(`checkpoint cadence, with an injected clock (${ENGINE})`, () => {
  let t: TestDatabase;
  const pair = generateKeyPairSync("ed25519");
  const pem = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const signing = unwrap(signingKeyFromPem(pem));
  const verifying = unwrap(
    verifyingKeyFromPem(pair.publicKey.export({ type: "spki", format: "pem" }).toString()),
  );

  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t.cleanup());

  async function fresh(): Promise<TestDatabase> {
    return createTestDatabase();
  }

  async function lines(database: Database) {
    const out = [];
    for await (const l of readLines(database.db)) out.push(l);
    return out;
  }

  function setup(database: Database, clock: FakeClock, every: { events: number; ms: number }) {
    const sink = memorySink();
    let cp: ReturnType<typeof createCheckpointer> | undefined;
    const audit = createAuditLog({ database, clock, log, onWritten: (seq) => cp?.noteCommitted(seq) });
    cp = createCheckpointer({
      database,
      audit,
      clock,
      log,
      key: signing,
      everyEvents: every.events,
      everyMs: every.ms,
      sinks: [sink],
    });
    return { audit, cp, sink };
  }

  test("every N events", async () => {
    const d = await fresh();
    try {
      const { audit, cp, sink } = setup(d.database, new FakeClock(), { events: 3, ms: 3_600_000 });
      for (let i = 0; i < 10; i++) {
        await audit.append({ type: "x.event" });
        await cp.idle();
      }
      const all = await lines(d.database);
      const checkpoints = all.filter((l) => l.type === CHECKPOINT_TYPE);
      // The first event is anchored at once (there was no checkpoint), then every 3 events.
      expect(checkpoints.map((l) => l.head_seq)).toEqual([1, 5, 9, 13]);
      expect(sink.got.map((c) => c.head_seq)).toEqual([1, 5, 9, 13]);
      const v = new AnchoredVerifier([verifying]);
      for (const l of all) v.push(l);
      expect(v.finish()).toMatchObject({ ok: true, anchoredThrough: 13, checkpoints: { inLog: 4 } });
      await audit.close();
    } finally {
      await d.cleanup();
    }
  });

  test("every T seconds, only when events followed the last checkpoint", async () => {
    const d = await fresh();
    try {
      const clock = new FakeClock("2026-05-01T00:00:00Z");
      const { audit, cp } = setup(d.database, clock, { events: 1000, ms: 60_000 });
      const checkpoints = async () => (await lines(d.database)).filter((l) => l.type === CHECKPOINT_TYPE);
      await audit.append({ type: "x.event" });
      await cp.idle();
      expect((await checkpoints()).map((c) => [c.head_seq, c.signed_at])).toEqual([
        [1, "2026-05-01T00:00:00.000Z"],
      ]);
      await audit.append({ type: "x.event" });
      clock.advance(59_999);
      await cp.tick();
      expect(await checkpoints()).toHaveLength(1);
      clock.advance(1);
      await cp.tick();
      expect((await checkpoints()).map((c) => [c.head_seq, c.signed_at])).toEqual([
        [1, "2026-05-01T00:00:00.000Z"],
        [3, "2026-05-01T00:01:00.000Z"],
      ]);
      // Nothing new: no checkpoint, however long it waits.
      clock.advance(3_600_000);
      await cp.tick();
      expect(await checkpoints()).toHaveLength(2);
      // A clean stop anchors whatever followed the last checkpoint.
      await audit.append({ type: "x.last" });
      await cp.close();
      expect((await checkpoints()).map((c) => c.head_seq)).toEqual([1, 3, 5]);
      await audit.close();
    } finally {
      await d.cleanup();
    }
  });

  test("several instances on one database never checkpoint the same head, and keep the cadence", async () => {
    const handles =
      ENGINE === "postgres"
        ? [t.database, await t.openAnother(), await t.openAnother()]
        : [t.database, t.database];
    const clock = new FakeClock();
    const instances = handles.map((database) => setup(database, clock, { events: 10, ms: 3_600_000 }));
    // Each instance appends one event at a time (a batch of many commits at once is one commit,
    // after which at most one checkpoint can follow), all instances at once.
    await Promise.all(
      instances.map(async ({ audit }, i) => {
        for (let j = 0; j < 80; j++) {
          if (j % 7 === 0)
            await handles[i]!.db.transaction((tx) =>
              audit.appendInTx(tx, [{ type: "x.in_tx", agent: `i${i}` }]),
            );
          else await audit.append({ type: "x.queued", agent: `i${i}` });
        }
      }),
    );
    await Promise.all(instances.map((x) => x.cp.idle()));
    const all = await lines(t.database);
    const at = all.filter((l) => l.type === CHECKPOINT_TYPE).map((l) => l.seq);
    expect(at.length).toBeGreaterThan(3);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]! - 1).toBeGreaterThanOrEqual(10);
    // Every checkpoint went to the sink of the instance that wrote it, and to no other.
    const sunk = instances.flatMap((x) => x.sink.got.map((c) => c.head_seq)).sort((a, b) => a - b);
    expect(sunk).toEqual(at.map((s) => s - 1));
    const v = new AnchoredVerifier(
      [verifying],
      instances.flatMap((x) => x.sink.got.map((c, i) => ({ checkpoint: c, source: `sink:${i + 1}` }))),
    );
    for (const l of all) v.push(l);
    expect(v.finish()).toMatchObject({ ok: true, anchoredThrough: at.at(-1)! - 1 });
    await Promise.all(instances.map((x) => x.audit.close()));
  });
});

describe("checkpoint sinks", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-sinks-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const c = (seq: number): Checkpoint => ({
    head_seq: seq,
    head_hash: "a".repeat(64),
    signed_at: "2026-05-01T00:00:00.000Z",
    key_id: "0123456789abcdef",
    signature: `${"A".repeat(86)}==`,
  });

  test("the file is created 0600 and only appended to, a line per checkpoint", async () => {
    const file = join(dir, "cp.jsonl");
    await writeFile(file, `${checkpointLine(c(1))}\n`, { mode: 0o600 });
    const sink = await openCheckpointFile(file, log);
    sink.write(c(2));
    sink.write(c(3));
    await sink.close();
    expect(await readFile(file, "utf8")).toBe([1, 2, 3].map((s) => `${checkpointLine(c(s))}\n`).join(""));
    const created = join(dir, "new.jsonl");
    const s2 = await openCheckpointFile(created, log);
    await s2.close();
    expect((await stat(created)).mode & 0o777).toBe(0o600);
    await expect(openCheckpointFile(join(dir, "no/such/dir/cp.jsonl"), log)).rejects.toThrow(
      /^BUTLER_AUDIT_CHECKPOINT_FILE: cannot open .*no\/such\/dir\/cp\.jsonl for appending: ENOENT$/,
    );
  });

  async function endpoint(answers: number[]): Promise<{ url: string; got: string[]; server: Server }> {
    const got: string[] = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        got.push(`${req.method} ${req.url} ${req.headers["content-type"]} ${body}`);
        res.statusCode = answers.shift() ?? 200;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got, server };
  }

  function capture() {
    const out: string[] = [];
    return { out, logger: createLogger("info", { write: (s: string) => out.push(s) }) };
  }

  test("the endpoint gets every checkpoint as a POST, retried after 5xx", async () => {
    const e = await endpoint([503, 500]);
    try {
      const { out, logger } = capture();
      const sink = httpCheckpointSink(`${e.url}/k/s3cr3t-path`, logger, { retryDelaysMs: [0, 0, 0] });
      sink.write(c(7));
      sink.write(c(8));
      await sink.idle();
      const body = (s: number) => `POST /k/s3cr3t-path application/json ${checkpointLine(c(s))}`;
      expect(e.got).toEqual([body(7), body(7), body(7), body(8)]);
      expect(out.join("")).not.toContain("s3cr3t");
      await sink.close();
    } finally {
      e.server.close();
    }
  });

  test("an endpoint that keeps failing is logged and given up, and never holds up the log", async () => {
    const e = await endpoint([500, 500, 500, 400]);
    const d = await createTestDatabase();
    try {
      const { out, logger } = capture();
      const sink = httpCheckpointSink(`${e.url}/k/s3cr3t-path`, logger, { retryDelaysMs: [0, 0] });
      const pair = generateKeyPairSync("ed25519");
      const k = signingKeyFromPem(pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString());
      if (!k.ok) throw new Error(k.error);
      let cp: ReturnType<typeof createCheckpointer> | undefined;
      const audit = createAuditLog({
        database: d.database,
        clock: new FakeClock(),
        log: logger,
        onWritten: (seq) => cp?.noteCommitted(seq),
      });
      cp = createCheckpointer({
        database: d.database,
        audit,
        clock: new FakeClock(),
        log: logger,
        key: k.value,
        everyEvents: 2,
        everyMs: 3_600_000,
        sinks: [sink],
      });
      for (let i = 0; i < 4; i++) {
        await audit.append({ type: "x.event" });
        await cp.idle();
      }
      // 3 tries of the first (500, 500, 500), then the second refused with 400: not retried.
      expect(e.got).toHaveLength(4);
      const logged = out.join("");
      expect(logged).toContain("audit checkpoint not delivered to the checkpoint endpoint");
      expect(logged).toContain("the checkpoint endpoint refused a checkpoint; not retried");
      expect(logged).toContain(new URL(e.url).host);
      expect(logged).not.toContain("s3cr3t");
      await cp.close();
      await audit.close();
    } finally {
      e.server.close();
      await d.cleanup();
    }
  });
});

describe("configuration and keys", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-keys-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const fail = (env: Record<string, string>): string => {
    try {
      loadConfig(env);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("the configuration was accepted");
  };

  test("keygen writes the private key 0600 and the public key beside it, and never overwrites", async () => {
    const file = join(dir, "k.pem");
    const r = await runCli(["audit", "keygen", "--out", file], {});
    expect(r.code).toBe(0);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const pub = await readFile(`${file}.pub`, "utf8");
    expect(pub).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect(r.stdout).toContain(pub);
    expect(r.stdout).not.toContain("PRIVATE KEY");
    const again = await runCli(["audit", "keygen", "--out", file], {});
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${file} exists; refusing to overwrite a key`);
    expect(await runCli(["audit", "keygen"], {})).toMatchObject({ code: 2 });
  });

  test("a configured key and checkpoint settings are read once, with sensible defaults", async () => {
    const file = join(dir, "k.pem");
    const c = loadConfig({
      BUTLER_AUDIT_SIGNING_KEY_FILE: file,
      BUTLER_AUDIT_CHECKPOINT_FILE: join(dir, "cp.jsonl"),
    });
    expect(c.auditCheckpoints).toMatchObject({
      keyFile: file,
      everyEvents: 1000,
      everySeconds: 60,
      file: join(dir, "cp.jsonl"),
      url: undefined,
    });
    expect(JSON.stringify(c)).not.toContain("PRIVATE");
    expect(loadConfig({}).auditCheckpoints).toBeUndefined();
  });

  test("a bad key file stops the start, naming the path and the reason", async () => {
    const sink = { BUTLER_AUDIT_CHECKPOINT_FILE: join(dir, "cp.jsonl") };
    const missing = join(dir, "missing.pem");
    expect(fail({ BUTLER_AUDIT_SIGNING_KEY_FILE: missing, ...sink })).toContain(
      `BUTLER_AUDIT_SIGNING_KEY_FILE: cannot read ${missing}: ENOENT`,
    );
    const junk = join(dir, "junk.pem");
    await writeFile(junk, "not a key\n", { mode: 0o600 });
    expect(fail({ BUTLER_AUDIT_SIGNING_KEY_FILE: junk, ...sink })).toContain(
      `BUTLER_AUDIT_SIGNING_KEY_FILE: ${junk} cannot sign checkpoints: it holds no PEM private key`,
    );
    const rsa = join(dir, "rsa.pem");
    await writeFile(
      rsa,
      generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }),
      { mode: 0o600 },
    );
    expect(fail({ BUTLER_AUDIT_SIGNING_KEY_FILE: rsa, ...sink })).toContain(
      `${rsa} cannot sign checkpoints: it holds an rsa key; checkpoints are signed with Ed25519`,
    );
    const pub = join(dir, "k.pem.pub");
    await chmod(pub, 0o600);
    expect(fail({ BUTLER_AUDIT_SIGNING_KEY_FILE: pub, ...sink })).toContain(
      `${pub} cannot sign checkpoints: it holds a public key; give the private key`,
    );
    const open = join(dir, "open.pem");
    await writeFile(open, await readFile(join(dir, "k.pem")), { mode: 0o644 });
    await chmod(open, 0o644);
    expect(fail({ BUTLER_AUDIT_SIGNING_KEY_FILE: open, ...sink })).toContain(
      `BUTLER_AUDIT_SIGNING_KEY_FILE: ${open} is open to every user of the machine (mode 644); chmod 600 it`,
    );
  });

  test("checkpoint settings need a key, and a key needs somewhere outside the database", () => {
    expect(fail({ BUTLER_AUDIT_CHECKPOINT_FILE: "/tmp/x" })).toContain(
      "BUTLER_AUDIT_CHECKPOINT_FILE needs BUTLER_AUDIT_SIGNING_KEY_FILE",
    );
    expect(fail({ BUTLER_AUDIT_SIGNING_KEY_FILE: join(dir, "k.pem") })).toContain(
      "BUTLER_AUDIT_SIGNING_KEY_FILE needs BUTLER_AUDIT_CHECKPOINT_FILE or BUTLER_AUDIT_CHECKPOINT_URL",
    );
    expect(
      fail({
        BUTLER_AUDIT_SIGNING_KEY_FILE: join(dir, "k.pem"),
        BUTLER_AUDIT_CHECKPOINT_URL: "https://user:pw@sink.example/cp",
        BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS: "0",
      }),
    ).toMatch(
      /BUTLER_AUDIT_CHECKPOINT_URL must be an http:\/\/ or https:\/\/ URL without user:password@[\s\S]*BUTLER_AUDIT_CHECKPOINT_EVERY_EVENTS must be between 1 and/,
    );
  });

  test("a checkpoint file that cannot be opened stops butler serve", async () => {
    const t = await createTestEnv({
      env: {
        BUTLER_AUDIT_SIGNING_KEY_FILE: join(dir, "k.pem"),
        BUTLER_AUDIT_CHECKPOINT_FILE: join(dir, "no/such/dir/cp.jsonl"),
      },
    });
    try {
      await expect(startServer(loadConfig(t.env), log)).rejects.toThrow(
        /BUTLER_AUDIT_CHECKPOINT_FILE: cannot open .* for appending: ENOENT/,
      );
    } finally {
      await t.cleanup();
    }
  });
});

// A guard for the test above: an Ed25519 signature by hand equals what Butler signs.
test("the signed payload is the documented canonical JSON", () => {
  const pair = generateKeyPairSync("ed25519");
  const k = signingKeyFromPem(pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString());
  if (!k.ok) throw new Error(k.error);
  const body = {
    head_seq: 42,
    head_hash: "b".repeat(64),
    signed_at: "2026-05-01T17:42:11.123Z",
    key_id: k.value.keyId,
  };
  expect(checkpointPayload(body)).toBe(jcs({ ...body, purpose: "butler.audit.checkpoint.v1" }));
  const signature = sign(null, Buffer.from(checkpointPayload(body)), pair.privateKey).toString("base64");
  expect(k.value.sign(checkpointPayload(body))).toBe(signature);
});
