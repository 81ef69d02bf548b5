import { constants } from "node:fs";
import { open, rm } from "node:fs/promises";
import { type AuditLine, ChainVerifier, canonicalJson } from "../../audit/chain.js";
import {
  AnchoredVerifier,
  type AnchorProblem,
  type AnchorReport,
  CHECKPOINT_TYPE,
  generateCheckpointKey,
  type VerifyingKey,
} from "../../audit/checkpoint.js";
import { parseExportLine } from "../../audit/export-line.js";
import { story } from "../../audit/story.js";
import { loadConfig } from "../../config.js";
import { AppError } from "../../errors.js";
import { parseTimestamp } from "../../policy/index.js";
import { anchorLines, readCheckpointFiles, readPublicKeys } from "../audit-anchors.js";
import {
  listOf,
  optional,
  type Parsed,
  print,
  required,
  snakeKeys,
  UsageError,
  type Values,
} from "../command.js";
import { jsonlLines } from "../jsonl.js";
import { type CliIo, termSafe, writeOut } from "../output.js";
import { withAdmin } from "../with-admin.js";

/**
 * `audit verify`: the chain in the database (through the admin operations), then, when a public
 * key is known (--public-key, or the configured signing key), every checkpoint in the log and in
 * the --checkpoints files against the events the database holds.
 */
export async function auditVerify({ values }: Parsed, io: CliIo): Promise<number> {
  const files = listOf(values.checkpoints);
  let keys = await readPublicKeys(listOf(values["public-key"]));
  if (keys.length === 0) {
    const configured = loadConfig(io.env).auditCheckpoints?.key;
    if (configured) keys = [{ keyId: configured.keyId, publicKey: configured.publicKey }];
  }
  if (files.length > 0 && keys.length === 0)
    throw new UsageError(
      "--checkpoints needs the public key that signed them: --public-key FILE (or BUTLER_AUDIT_SIGNING_KEY_FILE)",
    );
  const external = await readCheckpointFiles(files);
  const r = await withAdmin(io, async (ops) => {
    const chain = await ops.verifyAudit();
    if (keys.length === 0) return { chain, anchors: undefined };
    const v = new AnchoredVerifier(keys, external.checkpoints, "the log");
    for await (const line of ops.exportAudit({})) v.push(line);
    return { chain, anchors: v.finish() };
  });
  const problems = [
    ...external.problems,
    // The chain's own break is the first line already.
    ...(r.anchors?.problems ?? []).filter((p) => !(p.kind === "chain" && !r.chain.ok)).map((p) => p.message),
  ];
  const ok = r.chain.ok && problems.length === 0;
  const text = [
    r.chain.ok
      ? `audit chain verified: ${r.chain.count} events, intact through sequence ${r.chain.verifiedThrough}`
      : `audit chain BROKEN at sequence ${r.chain.break!.seq}: ${r.chain.break!.problem} (intact through sequence ${r.chain.verifiedThrough})`,
    ...(r.anchors
      ? [
          ...(problems.length > 0
            ? [`audit chain does NOT match its checkpoints:`, ...problems.map((m) => `- ${m}`)]
            : []),
          ...anchorLines(r.anchors, "the log", keys),
        ]
      : []),
    ...external.notes.map((n) => `note: ${n}`),
  ].join("\n");
  if (!r.anchors && !values.json)
    io.stderr.write(
      "butler: note: checkpoints not checked (no --public-key, no BUTLER_AUDIT_SIGNING_KEY_FILE): a chain rewritten together with its head by a database superuser would pass; see docs/audit.md\n",
    );
  print(
    io,
    snakeKeys({
      ...r.chain,
      ok,
      ...(r.anchors ? { checkpoints: { ...r.anchors, problems: undefined }, problems } : {}),
      notes: external.notes,
    }),
    text,
    !!values.json,
  );
  return ok ? 0 : 1;
}

/**
 * `audit verify-export`: an export checked offline, with no database: every line as Butler writes
 * it, the hash chain, every checkpoint line, and every checkpoint of the --checkpoints files.
 */
export async function auditVerifyExport({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const path = positionals[0]!;
  const files = listOf(values.checkpoints);
  const keys: VerifyingKey[] = await readPublicKeys(listOf(values["public-key"]));
  if (files.length > 0 && keys.length === 0)
    throw new UsageError("--checkpoints needs the public key that signed them: --public-key FILE");
  const external = await readCheckpointFiles(files);
  const anchored =
    keys.length > 0 ? new AnchoredVerifier(keys, external.checkpoints, "the export") : undefined;
  const plain = new ChainVerifier();
  let checkpointLines = 0;
  let lastSeq = 0;
  let count = 0;
  let unreadable: AnchorProblem | undefined;
  try {
    for await (const l of jsonlLines(path)) {
      const at = `line ${l.line}`;
      const fail = (message: string) => {
        unreadable = { kind: "chain", seq: lastSeq + 1, message: `${at}: ${message}` };
      };
      if (!l.complete) {
        fail(
          `the file ends in the middle of this line (no newline after it): the export was cut off after sequence ${lastSeq}`,
        );
        break;
      }
      if (l.text === undefined) {
        fail("not valid UTF-8");
        break;
      }
      const parsed = parseExportLine(l.text);
      if (!parsed.ok) {
        fail(l.text === "" ? "empty (an export has no empty lines)" : parsed.error);
        break;
      }
      const line = parsed.value;
      count++;
      lastSeq = line.seq;
      if (line.type === CHECKPOINT_TYPE) checkpointLines++;
      if (anchored) anchored.push(line);
      else plain.push(line);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code)
      throw new AppError("INVALID_INPUT", `${path}: cannot read it: ${(e as NodeJS.ErrnoException).code}`);
    throw e;
  }
  let report: AnchorReport | undefined;
  let problems: AnchorProblem[];
  if (anchored) {
    report = anchored.finish();
    // Past an unreadable line nothing was read: checkpoints beyond it are not "missing".
    problems = unreadable
      ? report.problems.filter((p) => p.kind !== "missing" || p.seq <= lastSeq)
      : report.problems;
  } else {
    problems = plain.broken ? [{ kind: "chain", seq: plain.broken.seq, message: plain.broken.problem }] : [];
  }
  if (unreadable) problems = [...problems, unreadable];
  const messages = [
    ...external.problems,
    ...problems.map((p) =>
      p.kind === "chain" && !p.message.startsWith("line ") ? `sequence ${p.seq}: ${p.message}` : p.message,
    ),
  ];
  const ok = messages.length === 0;
  const verifiedThrough = report ? report.verifiedThrough : plain.last.seq;
  const text = [
    ok
      ? `export verified: ${count} events, hash chain intact through sequence ${verifiedThrough}`
      : `export FAILED verification (hash chain intact through sequence ${verifiedThrough}):`,
    ...messages.map((m) => `- ${m}`),
    ...(report
      ? anchorLines(report, "the export", keys)
      : [
          `checkpoints not checked (no --public-key)${checkpointLines > 0 ? `: the export holds ${checkpointLines} checkpoint lines` : ""}; nothing anchors this export, so a rewrite with recomputed hashes, or events cut off its end, would pass`,
        ]),
    ...external.notes.map((n) => `note: ${n}`),
  ].join("\n");
  print(
    io,
    snakeKeys({
      ok,
      count,
      verifiedThrough,
      lastSeq,
      problems: messages,
      checkpoints: report ? { ...report, problems: undefined } : undefined,
      notes: external.notes,
    }),
    text,
    !!values.json,
  );
  return ok ? 0 : 1;
}

/** `audit keygen`: a new Ed25519 key pair; the private key is written 0600 and never overwrites. */
export async function auditKeygen({ values }: Parsed, io: CliIo): Promise<number> {
  const out = required(values, "out");
  const key = generateCheckpointKey();
  const create = async (file: string, mode: number) => {
    try {
      return await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new AppError(
        code === "EEXIST" ? "CONFLICT" : "INVALID_INPUT",
        code === "EEXIST"
          ? `${file} exists; refusing to overwrite a key (checkpoints signed with it could no longer be checked)`
          : `cannot create ${file}: ${code ?? (e as Error).message}`,
      );
    }
  };
  const pub = `${out}.pub`;
  // Both files are created (exclusively) before either is written: no half-made pair is left.
  const privateFile = await create(out, 0o600);
  let publicFile: Awaited<ReturnType<typeof open>>;
  try {
    publicFile = await create(pub, 0o644);
  } catch (e) {
    await privateFile.close();
    await rm(out, { force: true });
    throw e;
  }
  for (const [fh, text] of [
    [privateFile, key.privateKeyPem],
    [publicFile, key.publicKeyPem],
  ] as const) {
    try {
      await fh.writeFile(text, "utf8");
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  print(
    io,
    { private_key_file: out, public_key_file: pub, key_id: key.keyId, public_key: key.publicKeyPem },
    `Wrote the private key to ${out} (mode 0600) and the public key to ${pub} (key id ${key.keyId}).
Point BUTLER_AUDIT_SIGNING_KEY_FILE at ${out}; keep it out of the database and its backups.
Give the public key to whoever verifies (butler audit verify --public-key ${pub}):
${key.publicKeyPem}`,
    !!values.json,
  );
  return 0;
}

function auditFilter(values: Values) {
  let since: Date | undefined;
  if (typeof values.since === "string") {
    const t = parseTimestamp(values.since);
    if (!t.ok) throw new UsageError(`--since ${t.error}`);
    since = new Date(t.value);
  }
  return {
    agent: optional(values, "agent"),
    project: optional(values, "project"),
    since,
  };
}

export async function auditExport({ values }: Parsed, io: CliIo): Promise<number> {
  const filter = auditFilter(values);
  await withAdmin(io, async (ops) => {
    for await (const line of ops.exportAudit(filter)) await writeOut(io, `${canonicalJson(line)}\n`);
  });
  return 0;
}

export async function auditReplay({ values }: Parsed, io: CliIo): Promise<number> {
  const filter = { ...auditFilter(values), agent: required(values, "agent") };
  let n = 0;
  await withAdmin(io, async (ops) => {
    for await (const line of ops.exportAudit(filter)) {
      n++;
      await writeOut(
        io,
        values.json
          ? `${JSON.stringify({ seq: line.seq, ts: line.ts, story: story(line) })}\n`
          : `${formatStory(line)}\n`,
      );
    }
  });
  if (n === 0 && !values.json) io.stdout.write(`no events for agent ${termSafe(filter.agent)}\n`);
  return 0;
}

function formatStory(l: AuditLine): string {
  return `${l.ts}  #${l.seq}  ${termSafe(story(l))}`;
}
