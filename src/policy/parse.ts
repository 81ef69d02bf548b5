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
import { err, ok, type Result } from "../result.js";
import { normaliseCommand } from "./command.js";
import { compileGlob } from "./glob.js";
import { knownKeysAt, PolicyDocumentSchema, type RawPolicyDocument } from "./schema.js";
import { parseDuration, parseTimestamp } from "./time.js";
import type {
  AgentDef,
  ApproverDef,
  ConstraintDef,
  GrantDef,
  PolicyDocument,
  PolicyIssue,
  ProjectSettings,
  RiskTier,
} from "./types.js";

/** A policy file's name (as it should appear in messages) and its text. */
export interface PolicySource {
  file: string;
  text: string;
  /** Set when the file could not be read; the sentence says why. */
  unreadable?: string | undefined;
}

export const POLICY_FILE_MAX_BYTES = 1024 * 1024;

export const DEFAULT_SETTINGS: ProjectSettings = Object.freeze({
  grantTtlDefaultSeconds: 24 * 3600,
  grantTtlMaxSeconds: 7 * 24 * 3600,
  pendingTtlSeconds: 24 * 3600,
  neverGrant: [],
  approvals: { low: 1, medium: 1, high: 2 },
  risk: [],
  reminderAfterSeconds: undefined,
  channels: { slack: undefined, telegram: undefined },
}) as ProjectSettings;

type Path = readonly PropertyKey[];

/**
 * Parses and checks one policy file. Every problem is reported (not only the first), each with
 * its line, column and path, so that `butler policy validate` can list them all.
 */
export function parsePolicyFile(src: PolicySource): Result<PolicyDocument, PolicyIssue[]> {
  const lc = new LineCounter();
  const issues: PolicyIssue[] = [];
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
        message: "the file contains a NUL character; policy files are text",
      },
    ]);
  }
  if (Buffer.byteLength(src.text) > POLICY_FILE_MAX_BYTES) {
    return err([{ file: src.file, line: 1, col: 1, path: "", message: "the file is larger than 1 MiB" }]);
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
        message: "the file is empty; a policy needs at least project and agents",
      },
    ]);
  }
  if (docs.length > 1) {
    at(docs[1]!.range[0], [], "the file holds more than one YAML document; put each project in its own file");
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
        message: "the file is empty; a policy needs at least project and agents",
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
    at(
      doc.contents.range[0],
      [],
      "the document must be a mapping with keys such as project, agents and grants",
    );
    return err(issues);
  }

  const parsed = PolicyDocumentSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) reportZodIssue(issue, raw, doc, at);
    sortIssues(issues);
    return err(issues);
  }
  const checked = crossCheck(parsed.data, (path, message, onKey = false) =>
    at(offsetOf(doc, path, onKey), path, message),
  );
  if (issues.length) {
    sortIssues(issues);
    return err(issues);
  }
  return ok(checked);
}

/** The result of parsing a whole directory of policy files. */
export interface PolicySetResult {
  /** Documents that parsed, with no duplicate project among them. */
  documents: { file: string; document: PolicyDocument }[];
  /** Files that failed, with their problems and, when it could be read, the project they name. */
  failures: { file: string; project: string | undefined; issues: PolicyIssue[] }[];
}

/**
 * Parses several files and checks that no project is defined twice. A project defined by more
 * than one file is refused in every one of them: no file may decide which version serves.
 */
export function parsePolicySet(sources: readonly PolicySource[]): PolicySetResult {
  const failures: PolicySetResult["failures"] = [];
  const byProject = new Map<string, { src: PolicySource; document: PolicyDocument }[]>();
  const sorted = [...sources].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  for (const src of sorted) {
    const r = parsePolicyFile(src);
    if (!r.ok) {
      failures.push({ file: src.file, project: guessProject(src.text), issues: r.error });
      continue;
    }
    const list = byProject.get(r.value.project) ?? [];
    list.push({ src, document: r.value });
    byProject.set(r.value.project, list);
  }
  const documents: PolicySetResult["documents"] = [];
  for (const [project, list] of byProject) {
    if (list.length === 1) {
      documents.push({ file: list[0]!.src.file, document: list[0]!.document });
      continue;
    }
    for (const { src } of list) {
      const others = list.filter((o) => o.src !== src).map((o) => o.src.file);
      const lc = new LineCounter();
      const doc = parseAllDocuments(src.text, { lineCounter: lc }) as Document.Parsed[];
      const pos = lc.linePos(offsetOf(doc[0]!, ["project"], false));
      failures.push({
        file: src.file,
        project,
        issues: [
          {
            file: src.file,
            ...pos,
            path: "project",
            message: `project '${project}' is also defined in ${others.join(", ")}; each project has exactly one policy file`,
          },
        ],
      });
    }
  }
  documents.sort((a, b) => (a.file < b.file ? -1 : 1));
  failures.sort((a, b) => (a.file < b.file ? -1 : 1));
  return { documents, failures };
}

/** Formats an issue as `file:line:col: path: message`. */
export function formatIssue(i: PolicyIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.path ? `${i.path}: ` : ""}${i.message}`;
}

function guessProject(text: string): string | undefined {
  const m = /^project:\s*["']?([A-Za-z0-9][A-Za-z0-9._-]{0,63})["']?\s*(#.*)?$/m.exec(text);
  return m?.[1];
}

function sortIssues(issues: PolicyIssue[]) {
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

export function formatPath(path: Path): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(k))) out += out ? `.${String(k)}` : String(k);
    else out += `[${JSON.stringify(String(k))}]`;
  }
  return out;
}

/** The source offset of the node at `path` (or of its key), falling back to the deepest node found. */
function offsetOf(doc: Document.Parsed, path: Path, onKey: boolean): number {
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

type Report = (path: Path, message: string, onKey?: boolean) => void;

/** Checks that need the whole document (references, uniqueness, ranges) and builds the model. */
function crossCheck(raw: RawPolicyDocument, report: Report): PolicyDocument {
  const agents: AgentDef[] = [];
  const agentNames = new Set<string>();
  raw.agents.forEach((a, i) => {
    const def: AgentDef =
      typeof a === "string" ? { name: a, roles: [] } : { name: a.name, roles: a.roles ?? [] };
    if (agentNames.has(def.name)) report(["agents", i], `agent '${def.name}' is listed twice`);
    agentNames.add(def.name);
    agents.push(def);
  });
  const roles = new Set(agents.flatMap((a) => a.roles));

  const grants: GrantDef[] = [];
  const grantIds = new Map<string, number>();
  (raw.grants ?? []).forEach((g, i) => {
    const id = g.id ?? `g_${i + 1}`;
    const seen = grantIds.get(id);
    if (seen !== undefined)
      report(["grants", i, ...(g.id ? ["id"] : [])], `grant id '${id}' is already used by grants[${seen}]`);
    grantIds.set(id, i);
    g.actions.forEach((a, j) => {
      if (a.startsWith(`${g.service}:`)) {
        report(
          ["grants", i, "actions", j],
          `'${a}' repeats the service; under service ${g.service} write '${a.slice(g.service.length + 1)}'`,
        );
      }
    });
    g.agents?.forEach((name, j) => {
      if (!agentNames.has(name))
        report(["grants", i, "agents", j], `agent '${name}' is not listed under agents of this project`);
    });
    g.roles?.forEach((role, j) => {
      if (!roles.has(role))
        report(["grants", i, "roles", j], `role '${role}' is not held by any agent of this project`);
    });
    g.deny?.forEach((d, j) => {
      if (g.service === "tools") {
        if (normaliseCommand(d) === "")
          report(
            ["grants", i, "deny", j],
            "is empty once quotes and spaces are removed, so it would match nothing",
          );
        return;
      }
      const r = compileGlob(d);
      if (!r.ok) report(["grants", i, "deny", j], `is not a valid resource pattern: it ${r.error}`);
      else if (/\s/.test(d))
        report(
          ["grants", i, "deny", j],
          "is not a valid resource pattern: resources cannot contain whitespace",
        );
    });
    const constraints: ConstraintDef[] = [];
    for (const [param, c] of Object.entries(g.constraints ?? {})) {
      const path = ["grants", i, "constraints", param];
      if (Object.keys(c).length === 0) report(path, "names no check; use max, min, in, not_in or pattern");
      if (c.min !== undefined && c.max !== undefined && c.min > c.max)
        report(path, `min ${c.min} is greater than max ${c.max}`);
      constraints.push({ param, ...c });
    }
    grants.push({
      id,
      service: g.service,
      actions: g.actions,
      resources: g.resources,
      branches: g.branches,
      agents: g.agents,
      roles: g.roles,
      constraints,
      deny: g.deny ?? [],
      expiresAt: g.expires === undefined ? undefined : (parseTimestamp(g.expires) as { value: number }).value,
      description: g.description,
      approvedBy: g.approved_by,
    });
  });

  const approvers: ApproverDef[] = [];
  const seenApprover = new Set<string>();
  const seenSlack = new Map<string, string>();
  const seenTelegram = new Map<string, string>();
  (raw.approvers ?? []).forEach((a, i) => {
    if (seenApprover.has(a.id)) report(["approvers", i, "id"], `approver '${a.id}' is listed twice`);
    seenApprover.add(a.id);
    const slackId = a.slack?.user_id;
    if (slackId) {
      const other = seenSlack.get(slackId);
      if (other)
        report(
          ["approvers", i, "slack", "user_id"],
          `Slack user ${slackId} is already bound to approver '${other}'`,
        );
      seenSlack.set(slackId, a.id);
    }
    const tgId = a.telegram?.user_id === undefined ? undefined : String(a.telegram.user_id);
    if (tgId) {
      const other = seenTelegram.get(tgId);
      if (other)
        report(
          ["approvers", i, "telegram", "user_id"],
          `Telegram user ${tgId} is already bound to approver '${other}'`,
        );
      seenTelegram.set(tgId, a.id);
    }
    approvers.push({
      id: a.id,
      name: a.name,
      email: a.email,
      slack: a.slack ? { userId: a.slack.user_id, email: a.slack.email } : undefined,
      telegram: a.telegram ? { userId: tgId } : undefined,
      tiers: a.tiers ?? ["low", "medium", "high"],
    });
  });

  const s = raw.settings;
  const seconds = (v: string | number | undefined) =>
    v === undefined ? undefined : (parseDuration(v) as { value: number }).value;
  const ttlDefault = seconds(s?.grant_ttl?.default);
  const ttlMax = seconds(s?.grant_ttl?.max);
  if (ttlDefault !== undefined && ttlMax !== undefined && ttlDefault > ttlMax) {
    report(
      ["settings", "grant_ttl", "default"],
      `the default grant TTL is longer than the maximum (${s?.grant_ttl?.max})`,
    );
  }
  const grantTtlMaxSeconds = ttlMax ?? Math.max(DEFAULT_SETTINGS.grantTtlMaxSeconds, ttlDefault ?? 0);
  const settings: ProjectSettings = {
    grantTtlMaxSeconds,
    grantTtlDefaultSeconds:
      ttlDefault ?? Math.min(DEFAULT_SETTINGS.grantTtlDefaultSeconds, grantTtlMaxSeconds),
    pendingTtlSeconds: seconds(s?.pending_ttl) ?? DEFAULT_SETTINGS.pendingTtlSeconds,
    neverGrant: s?.never_grant ?? [],
    approvals: { ...DEFAULT_SETTINGS.approvals, ...(s?.approvals ?? {}) } as Record<RiskTier, number>,
    risk: Object.entries(s?.risk ?? {}).map(([action, tier]) => ({ action, tier })),
    reminderAfterSeconds: seconds(s?.reminder_after),
    channels: { slack: s?.channels?.slack, telegram: s?.channels?.telegram?.map(String) },
  };

  return { project: raw.project, description: raw.description, agents, grants, approvers, settings };
}
