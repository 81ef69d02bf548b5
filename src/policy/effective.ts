import { createTwoFilesPatch, FILE_HEADERS_ONLY, formatPatch, structuredPatch } from "diff";
import { isMap, isScalar, isSeq, parseDocument, type YAMLSeq } from "yaml";
import { parsePolicyFile } from "./parse.js";
import { escapeGlob } from "./scope.js";
import type { GrantDef, PolicyIssue } from "./types.js";

/** A grant from an approved access request, as it is written into the effective policy. */
export interface GrantEntry {
  /** The access request's id, which is also the grant's id. */
  id: string;
  agent: string;
  action: string;
  resource: string;
  branch: string | undefined;
  /** The resource glob the grant names instead of `resource` exactly, when one was asked for. */
  resourceGlob?: string | undefined;
  expiresAt: number;
  /** One line shown as a comment above the grant (who asked, who approved). */
  note: string;
  /** Who approved it (absent in a proposal). */
  approvedBy?: string[] | undefined;
}

const q = (s: string) => JSON.stringify(s);

/** The resource glob a grant names: the one asked for, or exactly its resource. */
function resourcesOf(g: GrantEntry): string {
  return g.resourceGlob ?? escapeGlob(g.resource);
}

/** The YAML lines of one grant, at `indent`, with its note as a comment line above it. */
export function renderGrant(g: GrantEntry, indent: string): string {
  return renderBlock(g, indent, false);
}

/**
 * A grant made permanent (approve and remember): its lines without `expires`, written into the
 * policy file itself. `g.id` is the rule's id in the file.
 */
export function renderRule(g: Omit<GrantEntry, "expiresAt">, indent: string): string {
  return renderBlock({ ...g, expiresAt: 0 }, indent, true);
}

function renderBlock(g: GrantEntry, indent: string, permanent: boolean): string {
  const colon = g.action.indexOf(":");
  const service = g.action.slice(0, colon);
  const verb = g.action.slice(colon + 1);
  const lines = [
    `# ${g.note.replace(/[\r\n]+/g, " ")}`,
    `- id: ${g.id}`,
    `  service: ${q(service)}`,
    `  actions: [${q(escapeGlob(verb))}]`,
    // A call without a resource is granted for its action alone; otherwise exactly that resource.
    ...(g.resource === "" ? [] : [`  resources: [${q(resourcesOf(g))}]`]),
    ...(g.branch === undefined ? [] : [`  branches: [${q(escapeGlob(g.branch))}]`]),
    `  agents: [${q(g.agent)}]`,
    ...(g.approvedBy?.length ? [`  approved_by: [${g.approvedBy.map(q).join(", ")}]`] : []),
    ...(permanent ? [] : [`  expires: ${q(new Date(g.expiresAt).toISOString().replace(".000Z", "Z"))}`]),
  ];
  return `${lines.map((l) => indent + l).join("\n")}\n`;
}

/**
 * A grant as the policy language reads it: exactly what parsing `renderGrant`'s lines gives, built
 * without writing and parsing the text (an instance serves grants from their rows this way).
 */
export function grantDefOf(g: GrantEntry): GrantDef {
  const colon = g.action.indexOf(":");
  return {
    id: g.id,
    service: g.action.slice(0, colon),
    actions: [escapeGlob(g.action.slice(colon + 1))],
    resources: g.resource === "" ? undefined : [resourcesOf(g)],
    branches: g.branch === undefined ? undefined : [escapeGlob(g.branch)],
    agents: [g.agent],
    roles: undefined,
    constraints: [],
    deny: [],
    expiresAt: g.expiresAt,
    description: undefined,
    approvedBy: g.approvedBy?.length ? g.approvedBy : undefined,
  };
}

/**
 * Why `g` would not load as a grant of `project`, or undefined if it would: its lines are parsed
 * in a policy of their own (project, its agent, the grant), which checks exactly what they add.
 */
export function grantProblem(project: string, g: GrantEntry): PolicyIssue | undefined {
  const text = `project: ${q(project)}\nagents: [${q(g.agent)}]\ngrants:\n${renderGrant(g, "  ")}`;
  const result = parsePolicyFile({ file: "proposal", text });
  if (result.ok) return undefined;
  return result.error[0];
}

/** Where a baseline takes its grants: the text before them, their indent, the text after. */
interface Splice {
  head: string;
  indent: string;
  tail: string;
}

const splices = new Map<string, Splice>();

/** Where `baseline` takes its grants (remembered per baseline text: a file changes seldom). */
function spliceOf(baseline: string): Splice {
  let s = splices.get(baseline);
  if (s === undefined) {
    s = findSplice(baseline);
    if (splices.size >= 256) splices.clear();
    splices.set(baseline, s);
  }
  return s;
}

function findSplice(baseline: string): Splice {
  const doc = parseDocument(baseline);
  const root = doc.contents;
  const text = baseline.endsWith("\n") ? baseline : `${baseline}\n`;
  if (!isMap(root)) throw new Error("the baseline policy is not a mapping");
  const pair = root.items.find((p) => isScalar(p.key) && p.key.value === "grants");
  const value = pair?.value;
  if (isSeq(value) && !value.flow && value.items.length > 0) {
    const seq = value as YAMLSeq;
    const first = seq.range?.[0] ?? 0;
    const indent = " ".repeat(first - (text.lastIndexOf("\n", first - 1) + 1));
    const end = (seq.items.at(-1) as { range?: [number, number, number] }).range?.[2] ?? text.length;
    const at = text[end - 1] === "\n" ? end : text.indexOf("\n", end) + 1 || text.length;
    return { head: text.slice(0, at), indent, tail: text.slice(at) };
  }
  if (pair === undefined) return { head: `${text}grants:\n`, indent: "  ", tail: "" };
  if (
    value === null ||
    value === undefined ||
    (isScalar(value) && value.value === null) ||
    (isSeq(value) && value.items.length === 0)
  ) {
    // `grants:` or `grants: []`: the key's line becomes a block list.
    const keyStart = (pair.key as { range: [number, number, number] }).range[0];
    const lineEnd = text.indexOf("\n", keyStart);
    return { head: `${text.slice(0, keyStart)}grants:\n`, indent: "  ", tail: text.slice(lineEnd + 1) };
  }
  // A flow list with items (`grants: [{...}]`) cannot take block items: write it out again.
  if (!isSeq(value)) throw new Error("the baseline's grants is not a list");
  value.flow = false;
  const rewritten = doc.toString({ lineWidth: 0 });
  const again = parseDocument(rewritten).get("grants", true);
  if (!isSeq(again) || again.flow) throw new Error("could not rewrite the baseline's grants as a block list");
  return findSplice(rewritten);
}

/**
 * A policy file's text with one block appended to its `grants` list, every other byte as it was
 * (a file without `grants` gets the key as its last line first; `grants:` or `grants: []` alone
 * on its line becomes `grants:`; a last line without a line break gets one). Undefined when that
 * cannot be done without rewriting more: a flow list (`grants: [...]`), a comment on an empty
 * list's key line, or CRLF line ends.
 */
export function appendToFile(text: string, block: (indent: string) => string): string | undefined {
  // Lines ending in CRLF would get a block ending in LF: not the file's own bytes.
  if (text.includes("\r")) return undefined;
  const { head, indent, tail } = spliceOf(text);
  const whole = text.endsWith("\n") ? text : `${text}\n`;
  const sameBytes =
    head + tail === whole ||
    (head === `${whole}grants:\n` && tail === "") ||
    sameButKeyLine(whole, head, tail);
  return sameBytes ? head + block(indent) + tail : undefined;
}

/** `grants:` or `grants: []` on its own line, made the block list's key: that line is the one changed. */
function sameButKeyLine(whole: string, head: string, tail: string): boolean {
  const start = head.lastIndexOf("\n", head.length - 2) + 1;
  const end = whole.length - tail.length;
  const line = whole.slice(start, end);
  return (
    head.slice(start) === "grants:\n" &&
    whole.slice(0, start) === head.slice(0, start) &&
    /^grants:[ \t]*(\[[ \t]*\])?[ \t]*\n$/.test(line)
  );
}

/**
 * The effective policy: the baseline file's text with each grant appended to its `grants` list.
 * The baseline's own lines are kept byte for byte (the grants are spliced in as text), so that a
 * diff between two effective policies shows only the grants that changed.
 */
export function composeEffective(
  baseline: string,
  entries: readonly GrantEntry[],
  render: (g: GrantEntry, indent: string) => string = renderGrant,
): string {
  if (entries.length === 0) return baseline;
  const { head, indent, tail } = spliceOf(baseline);
  return head + entries.map((e) => render(e, indent)).join("") + tail;
}

/**
 * The effective policy with `entries`, with `proposed` added, and the unified diff between them
 * (what `policyDiff` of the two gives), computed on the few lines around the added grant: the
 * cost does not grow with the grants already in force.
 */
export function proposeEffective(
  project: string,
  baseline: string,
  entries: readonly GrantEntry[],
  proposed: GrantEntry,
  beforeLabel: string,
  afterLabel: string,
  render: (g: GrantEntry, indent: string) => string = renderGrant,
): { before: string; after: string; diff: string } {
  const { head, indent, tail } = spliceOf(baseline);
  const block = entries.map((e) => render(e, indent)).join("");
  const spliced = head + block + tail;
  const before = entries.length === 0 ? baseline : spliced;
  const added = render(proposed, indent);
  const after = head + block + added + tail;
  if (before !== spliced) {
    // The baseline as written (no grants yet, and its grants key rewritten): diff it whole.
    return { before, after, diff: policyDiff(project, before, after, beforeLabel, afterLabel) };
  }
  const at = head.length + block.length;
  return { before, after, diff: insertionDiff(project, before, at, added, beforeLabel, afterLabel) };
}

/**
 * Lines either side of an insertion that its diff is computed from: more than the 3 lines of
 * context a hunk shows (jsdiff shows a 4th before an insertion at the end of the text), so that
 * jsdiff picks its context from the window exactly as from the whole text.
 */
const WINDOW = 8;

/**
 * The unified diff of inserting `added` (whole lines) into `text` at offset `at` (a line start),
 * from a window of WINDOW lines either side, with the line numbers of the whole text.
 */
function insertionDiff(
  project: string,
  text: string,
  at: number,
  added: string,
  beforeLabel: string,
  afterLabel: string,
): string {
  let start = at;
  for (let i = 0; i < WINDOW && start > 0; i++) start = text.lastIndexOf("\n", start - 2) + 1;
  let end = at;
  for (let i = 0; i < WINDOW && end < text.length; i++) {
    const nl = text.indexOf("\n", end);
    end = nl < 0 ? text.length : nl + 1;
  }
  let offset = 0;
  for (let i = text.indexOf("\n"); i >= 0 && i < start; i = text.indexOf("\n", i + 1)) offset++;
  const window = text.slice(start, end);
  const patch = structuredPatch(
    `${project}.yaml`,
    `${project}.yaml`,
    window,
    text.slice(start, at) + added + text.slice(at, end),
    beforeLabel,
    afterLabel,
  );
  for (const h of patch.hunks) {
    h.oldStart += offset;
    h.newStart += offset;
  }
  return formatPatch(patch, FILE_HEADERS_ONLY);
}

/** A unified diff of two versions of a project's effective policy. */
export function policyDiff(
  project: string,
  before: string,
  after: string,
  beforeLabel: string,
  afterLabel: string,
): string {
  return createTwoFilesPatch(`${project}.yaml`, `${project}.yaml`, before, after, beforeLabel, afterLabel, {
    headerOptions: FILE_HEADERS_ONLY,
  });
}
