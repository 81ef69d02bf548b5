import { readFile } from "node:fs/promises";
import {
  type AnchorReport,
  type ExternalCheckpoint,
  parseCheckpoint,
  type VerifyingKey,
  verifyingKeyFromPem,
} from "../audit/checkpoint.js";
import { AppError } from "../errors.js";
import { jsonlLines } from "./jsonl.js";

/** Reads public keys given with --public-key; a file that is not one is an error naming it. */
export async function readPublicKeys(files: readonly string[]): Promise<VerifyingKey[]> {
  const keys: VerifyingKey[] = [];
  for (const file of files) {
    let pem: string;
    try {
      pem = await readFile(file, "utf8");
    } catch (e) {
      throw new AppError(
        "INVALID_INPUT",
        `--public-key ${file}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    const k = verifyingKeyFromPem(pem);
    if (!k.ok) throw new AppError("INVALID_INPUT", `--public-key ${file}: ${k.error}`);
    keys.push(k.value);
  }
  return keys;
}

export interface CheckpointFiles {
  checkpoints: ExternalCheckpoint[];
  /** Lines that are not checkpoints: the file was damaged or tampered with. */
  problems: string[];
  /** Things worth knowing that are not failures (a last line cut off by a crash). */
  notes: string[];
}

/** Reads checkpoint files (JSONL, one checkpoint a line, as Butler appends them). */
export async function readCheckpointFiles(files: readonly string[]): Promise<CheckpointFiles> {
  const out: CheckpointFiles = { checkpoints: [], problems: [], notes: [] };
  for (const file of files) {
    try {
      for await (const l of jsonlLines(file)) {
        const where = `${file}:${l.line}`;
        if (!l.complete) {
          out.notes.push(
            `${where}: the last line has no newline (a write cut off by a crash?); it is ignored`,
          );
          continue;
        }
        if (l.text === undefined) {
          out.problems.push(`${where}: not valid UTF-8`);
          continue;
        }
        if (l.text === "") continue;
        let v: unknown;
        try {
          v = JSON.parse(l.text);
        } catch (e) {
          out.problems.push(`${where}: not JSON (${(e as Error).message})`);
          continue;
        }
        const c = parseCheckpoint(v);
        if (!c.ok) out.problems.push(`${where}: not a checkpoint: ${c.error}`);
        else out.checkpoints.push({ checkpoint: c.value, source: where });
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code)
        throw new AppError(
          "INVALID_INPUT",
          `--checkpoints ${file}: cannot read it: ${(e as NodeJS.ErrnoException).code}`,
        );
      throw e;
    }
  }
  return out;
}

/** The checkpoint part of a verification, as lines of text. */
export function anchorLines(
  r: AnchorReport,
  subject: "the log" | "the export",
  keys: readonly VerifyingKey[],
): string[] {
  const lines: string[] = [];
  const { inLog, external, matched } = r.checkpoints;
  lines.push(
    `checkpoints: ${inLog} in ${subject}, ${external} from checkpoint files; ${matched} match${
      r.problems.some((p) => p.kind === "forged")
        ? ""
        : `; signatures valid (key ${keys.map((k) => k.keyId).join(", ")})`
    }`,
  );
  if (r.anchoredThrough > 0)
    lines.push(`anchored through sequence ${r.anchoredThrough} by checkpoint ${r.anchoredBy}`);
  else lines.push(`anchored: nothing (no checkpoint matches an event of ${subject})`);
  if (r.unanchored)
    lines.push(
      `not anchored: sequence ${r.unanchored.from}..${r.unanchored.to} ${r.anchoredThrough > 0 ? "follow the last matching checkpoint" : "(no checkpoint covers them)"}. They chain correctly, but a rewrite of them (with recomputed hashes) or events cut off the end cannot be detected without a later checkpoint`,
    );
  return lines;
}
