import {
  type Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type ParsedNode,
  parseAllDocuments,
} from "yaml";
import type { z } from "zod";
import { err, ok, type Result } from "./result.js";

/**
 * Strict YAML files (policies, provider specs): parsed with positions, checked against a zod
 * schema and then by the caller's cross-checks, every problem reported as `file:line:col: path:
 * message`, with "did you mean" for unknown keys.
 */

/** One problem found in a file, located precisely enough to fix it. */
export interface FileIssue {
  file: string;
  line: number;
  col: number;
  /** Path into the document, e.g. `grants[2].actions[0]`; empty for the document itself. */
  path: string;
  message: string;
}

/** A file's name (as it should appear in messages) and its text. */
export interface FileSource {
  file: string;
  text: string;
  /** Set when the file could not be read; the sentence says why. */
  unreadable?: string | undefined;
}

export type Path = readonly PropertyKey[];
/** Reports a problem at a path of the document (at its key when `onKey`). */
export type Report = (path: Path, message: string, onKey?: boolean) => void;

export interface YamlFileSpec<Raw, Out> {
  schema: z.ZodType<Raw>;
  /** The keys an object at `path` may have, for "did you mean" hints. */
  knownKeysAt: (path: readonly PropertyKey[]) => string[] | undefined;
  /** "a policy", "a provider spec". */
  what: string;
  /** The keys it needs at least: "project and agents". */
  needs: string;
  maxBytes: number;
  maxBytesMessage: string;
  /** What to do instead of several documents in one file. */
  multipleDocuments: string;
  /** Checks needing the whole document; builds the result. */
  crossCheck: (raw: Raw, report: Report) => Out;
}

/** Parses and checks one file, reporting every problem. */
export function parseYamlFile<Raw, Out>(
  src: FileSource,
  spec: YamlFileSpec<Raw, Out>,
): Result<Out, FileIssue[]> {
  const lc = new LineCounter();
  const issues: FileIssue[] = [];
  const at = (offset: number, path: Path, message: string) => {
    const { line, col } = lc.linePos(offset);
    issues.push({ file: src.file, line, col, path: formatPath(path), message });
  };
  if (src.unreadable !== undefined) {
    return err([{ file: src.file, line: 1, col: 1, path: "", message: `the file ${src.unreadable}` }]);
  }
  const nul = src.text.indexOf("\u0000");
  if (nul >= 0) {
    const line = 1 + (src.text.slice(0, nul).match(/\n/g)?.length ?? 0);
    const col = nul - src.text.lastIndexOf("\n", nul - 1);
    return err([
      {
        file: src.file,
        line,
        col,
        path: "",
        message: "the file contains a NUL character; it must be text",
      },
    ]);
  }
  if (Buffer.byteLength(src.text) > spec.maxBytes) {
    return err([{ file: src.file, line: 1, col: 1, path: "", message: spec.maxBytesMessage }]);
  }
  const docs = parseAllDocuments(src.text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (!Array.isArray(docs) || docs.length === 0) {
    // parseAllDocuments returns an empty stream for a file with no documents at all.
    return err([
      {
        file: src.file,
        line: 1,
        col: 1,
        path: "",
        message: `the file is empty; ${spec.what} needs at least ${spec.needs}`,
      },
    ]);
  }
  if (docs.length > 1) {
    at(docs[1]!.range[0], [], `the file holds more than one YAML document; ${spec.multipleDocuments}`);
  }
  const doc = docs[0] as Document.Parsed;
  for (const e of [...doc.errors, ...doc.warnings]) at(e.pos[0], [], yamlMessage(e.code, e.message));
  if (issues.length) return err(issues);
  if (doc.contents === null)
    return err([
      {
        file: src.file,
        line: 1,
        col: 1,
        path: "",
        message: `the file is empty; ${spec.what} needs at least ${spec.needs}`,
      },
    ]);

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    at(0, [], `the document cannot be read: ${(e as Error).message}`);
    return err(issues);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    at(doc.contents.range[0], [], `the document must be a mapping with keys such as ${spec.needs}`);
    return err(issues);
  }

  const parsed = spec.schema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) reportZodIssue(issue, raw, doc, at, spec.knownKeysAt);
    sortIssues(issues);
    return err(issues);
  }
  const checked = spec.crossCheck(parsed.data, (path, message, onKey = false) =>
    at(offsetOf(doc, path, onKey), path, message),
  );
  if (issues.length) {
    sortIssues(issues);
    return err(issues);
  }
  return ok(checked);
}

/** Formats an issue as `file:line:col: path: message`. */
export function formatIssue(i: FileIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.path ? `${i.path}: ` : ""}${i.message}`;
}

export function formatPath(path: Path): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(k))) out += out ? `.${String(k)}` : String(k);
    else out += `[${JSON.stringify(String(k))}]`;
  }
  return out;
}

function sortIssues(issues: FileIssue[]) {
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
}

function yamlMessage(code: string, message: string): string {
  const first = message.split("\n")[0] ?? message;
  switch (code) {
    case "DUPLICATE_KEY":
      return "a key appears twice in the same mapping; remove or merge one of them";
    case "TAB_AS_INDENT":
      return "tabs cannot indent YAML; use spaces";
    default:
      return `invalid YAML (${code}): ${first.replace(/ at line \d+, column \d+:?$/, "")}`;
  }
}

/** The source offset of the node at `path` (or of its key), falling back to the deepest node found. */
export function offsetOf(doc: Document.Parsed, path: Path, onKey: boolean): number {
  let node: Node | null = doc.contents as ParsedNode | null;
  let best = node?.range?.[0] ?? 0;
  for (let i = 0; i < path.length; i++) {
    const k = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(k));
      if (!pair) return best;
      const keyNode = pair.key as ParsedNode;
      const last = i === path.length - 1;
      if (last && onKey) return keyNode.range[0];
      best = keyNode.range[0];
      const value = pair.value as ParsedNode | null;
      if (!value) return best;
      node = value;
      best = value.range[0];
    } else if (isSeq(node) && typeof k === "number") {
      const item = node.items[k] as ParsedNode | undefined;
      if (!item) return best;
      node = item;
      best = item.range[0];
    } else {
      return best;
    }
  }
  return best;
}

function valueAt(root: unknown, path: Path): unknown {
  let v: unknown = root;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k as string];
  }
  return v;
}

function describe(v: unknown): string {
  if (v === null) return "empty (null)";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return `the text ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v)}`;
}

const EXPECTED: Record<string, string> = {
  string: "text",
  number: "a number",
  boolean: "true or false",
  array: "a list (one item per line starting with -, or [a, b])",
  object: "a mapping of keys to values",
};

function reportZodIssue(
  issue: z.core.$ZodIssue,
  raw: unknown,
  doc: Document.Parsed,
  at: (offset: number, path: Path, message: string) => void,
  knownKeysAt: (path: readonly PropertyKey[]) => string[] | undefined,
) {
  const path = issue.path;
  const value = valueAt(raw, path);
  switch (issue.code) {
    case "invalid_type": {
      if (value === undefined) {
        const key = String(path.at(-1));
        at(offsetOf(doc, path.slice(0, -1), false), path, `'${key}' is required`);
      } else {
        at(
          offsetOf(doc, path, false),
          path,
          `must be ${EXPECTED[issue.expected] ?? issue.expected}, not ${describe(value)}`,
        );
      }
      return;
    }
    case "unrecognized_keys": {
      const known = knownKeysAt(path) ?? [];
      for (const key of issue.keys) {
        const hint = closest(key, known);
        at(
          offsetOf(doc, [...path, key], true),
          [...path, key],
          `unknown key '${key}'${hint ? `; did you mean '${hint}'?` : ""} Allowed keys here: ${known.join(", ")}`,
        );
      }
      return;
    }
    case "invalid_key": {
      const inner = issue.issues.map((i) => i.message).join("; ");
      at(offsetOf(doc, path, true), path, `the key ${inner}`);
      return;
    }
    case "too_big":
      at(
        offsetOf(doc, path, false),
        path,
        !issue.message.startsWith("Too big")
          ? issue.message
          : issue.origin === "number"
            ? `must be at most ${issue.maximum}`
            : `is too long (at most ${issue.maximum})`,
      );
      return;
    default:
      at(offsetOf(doc, path, false), path, issue.message);
  }
}

/** The candidate within edit distance 2 of `word`, if any: the "did you mean" of unknown keys. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
