import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import ts from "typescript";
import { describe, expect, test } from "vitest";

// The rules of the code's shape, checked on the source text with TypeScript's own parser (a
// devDependency already): folder ranks, no folder cycles, function and file length.

// ---------------------------------------------------------------------------------------------
// Ranks: a file may import from its own unit, from a unit of the same rank, or from a lower rank.
// A unit is a folder of src/ (or one of SUBUNITS), or a top-level file by its name. Lowest first.
// ---------------------------------------------------------------------------------------------
const LAYERS: readonly (readonly string[])[] = [
  // 1. Pure: no I/O, no database, no framework.
  ["policy", "result", "yaml-file", "hash"],
  // 2. Leaves every service uses: the pure audit core (hash chain, signed checkpoints), the database,
  //    errors, time, ids, logging and secrets, configuration, the data directory, metrics, and the
  //    start/stop runner of components (it knows nothing of what it runs).
  [
    "audit/chain",
    "audit/checkpoint",
    "db",
    "errors",
    "clock",
    "ids",
    "logger",
    "secrets",
    "time-format",
    "version",
    "config",
    "data-dir",
    "metrics",
    "lifecycle",
  ],
  // 3. Stores and logs the workflow builds on.
  ["audit", "agents", "policy-store", "outbox", "grants"],
  // 4. The HTTP toolkit (fastify factory, errors on the wire, auth, validation): above agents,
  //    whose identities it authenticates; below every feature that has routes.
  ["http"],
  // 5. The workflow core: decisions and access requests.
  ["gateway", "butler"],
  // 6. Features around the core: approval channels (the port and each adapter), A2A, providers,
  //    the dashboard and the operators' admin operations.
  ["channels", "channels/slack", "channels/telegram", "a2a", "providers", "dashboard", "admin"],
  // 7. Agent protocols over those features: MCP (provider operations as tools, access requests).
  ["mcp"],
  // 8. The one assembler of every feature's routes.
  ["server"],
  // 9. Composition roots and the programs built on them; the published agent helper.
  ["services", "main", "cli", "client"],
];

/** Sub-folders (or files) of a folder that rank on their own. */
const SUBUNITS = ["audit/chain", "audit/checkpoint", "channels/slack", "channels/telegram"];

/**
 * Imports that break a rule today, each with the reason it is left and the way out, as
 * `<unit> -> <file it imports>`, with ` (types)` when only type-only imports are let through.
 * The test fails when one is no longer used (remove it here) as much as when a new break appears.
 */
const KNOWN_RANK_BREAKS: Record<string, string> = {};

const RANK = new Map(LAYERS.flatMap((units, i) => units.map((u) => [u, i + 1] as const)));

// ---------------------------------------------------------------------------------------------
// Lengths: no function longer than 150 lines, no file longer than 600.
// ---------------------------------------------------------------------------------------------
const MAX_FUNCTION_LINES = 150;
const MAX_FILE_LINES = 600;

/**
 * Functions over the limit today, with their length now (they may shrink, not grow). Each is
 * being cut by a change under way (issue 13); remove an entry once its function fits. A
 * function is named by its file and the chain of named functions it sits in.
 */
const LONG_FUNCTIONS: Record<string, number> = {};

/** Files over the limit today, with their length now (see LONG_FUNCTIONS). */
const LONG_FILES: Record<string, number> = {};

// ---------------------------------------------------------------------------------------------

interface Source {
  /** Relative to the repository, with forward slashes: `src/butler/routes.ts`. */
  path: string;
  text: string;
  ast: ts.SourceFile;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}

function parse(path: string, text: string): Source {
  return { path, text, ast: ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true) };
}

const SOURCES: Source[] = tsFiles("src").map((f) => parse(f.split("\\").join("/"), readFileSync(f, "utf8")));

interface Import {
  spec: string;
  line: number;
  typeOnly: boolean;
}

/** Every module a file names: imports, re-exports, `import()` calls and `import("…")` types. */
function importsOf(src: Source): Import[] {
  const out: Import[] = [];
  const add = (lit: ts.Node, typeOnly: boolean) => {
    if (!ts.isStringLiteralLike(lit)) return;
    const line = src.ast.getLineAndCharacterOfPosition(lit.getStart(src.ast)).line + 1;
    out.push({ spec: lit.text, line, typeOnly });
  };
  const visit = (n: ts.Node) => {
    if (ts.isImportDeclaration(n)) {
      const c = n.importClause;
      const named =
        c?.namedBindings && ts.isNamedImports(c.namedBindings) ? c.namedBindings.elements : undefined;
      add(
        n.moduleSpecifier,
        !!c && (c.isTypeOnly || (!c.name && !!named && named.every((e) => e.isTypeOnly))),
      );
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier) add(n.moduleSpecifier, n.isTypeOnly);
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) add(n.argument.literal, true);
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0])
      add(n.arguments[0], false);
    ts.forEachChild(n, visit);
  };
  visit(src.ast);
  return out;
}

/** The unit a file of src/ belongs to: `butler`, `audit/chain`, `channels/slack`, `main`. */
function unitOf(path: string): string {
  const parts = path
    .replace(/^src\//, "")
    .replace(/\.ts$/, "")
    .split("/");
  if (parts.length === 1) return parts[0]!;
  const sub = `${parts[0]}/${parts[1]}`;
  return SUBUNITS.includes(sub) ? sub : parts[0]!;
}

/** The file a relative import names (`../x.js` → `src/x.ts`); undefined for packages. */
function target(from: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  return normalize(join(dirname(from), spec.replace(/\.js$/, ".ts")))
    .split("\\")
    .join("/");
}

interface Edge {
  from: string;
  to: string;
  /** `src/a/x.ts imports ../b/y.js` */
  where: string;
  /** The KNOWN_RANK_BREAKS entries that would let it through: `a -> src/b/y.ts`, and with ` (types)`. */
  keys: string[];
}

function unitEdges(): Edge[] {
  const edges: Edge[] = [];
  for (const src of SOURCES) {
    const from = unitOf(src.path);
    for (const i of importsOf(src)) {
      const file = target(src.path, i.spec);
      if (!file?.startsWith("src/")) continue;
      const to = unitOf(file);
      if (to === from) continue;
      const key = `${from} -> ${file}`;
      edges.push({
        from,
        to,
        where: `${src.path}:${i.line} imports ${i.spec}`,
        keys: i.typeOnly ? [key, `${key} (types)`] : [key],
      });
    }
  }
  return edges;
}

/** Strongly connected components of more than one unit (Tarjan). */
function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const connect = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  return out;
}

/** The shortest path from the first unit of `scc` back to itself, for the failure message. */
function shortestLoop(graph: ReadonlyMap<string, ReadonlySet<string>>, scc: readonly string[]): string[] {
  const start = scc[0]!;
  const before = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!scc.includes(w) || before.has(w)) continue;
      before.set(w, v);
      if (w === start) queue.length = 0;
      else queue.push(w);
    }
  }
  const loop = [start];
  for (let v = before.get(start)!; v !== start; v = before.get(v)!) loop.unshift(v);
  return [start, ...loop];
}

interface Fn {
  /** `createButler/review`: the chain of named functions it sits in, then its own name. */
  name: string;
  line: number;
  lines: number;
}

function ownName(n: ts.SignatureDeclaration, sf: ts.SourceFile): string | undefined {
  if (n.name) return n.name.getText(sf);
  const p = n.parent;
  if ((ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)) && p.name)
    return p.name.getText(sf);
  return undefined;
}

/** Every function with a body (declarations, expressions, arrows, methods, accessors), nested ones too. */
function functionsOf(src: Source): Fn[] {
  const out: Fn[] = [];
  const lineOf = (pos: number) => src.ast.getLineAndCharacterOfPosition(pos).line;
  const visit = (n: ts.Node, outer: string[]) => {
    let path = outer;
    if (ts.isFunctionLike(n) && "body" in n && n.body) {
      path = [...outer, ownName(n, src.ast) ?? "(anonymous)"];
      out.push({
        name: path.join("/"),
        line: lineOf(n.getStart(src.ast)) + 1,
        lines: lineOf(n.end) - lineOf(n.getStart(src.ast)) + 1,
      });
    }
    ts.forEachChild(n, (c) => visit(c, path));
  };
  visit(src.ast, []);
  return out;
}

function lineCount(text: string): number {
  return text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
}

/** Checks measured lengths against a limit and a list of known offenders; returns the failures. */
function lengthFailures(
  measured: readonly { key: string; lines: number; at: string }[],
  limit: number,
  known: Readonly<Record<string, number>>,
  what: string,
): string[] {
  const failures: string[] = [];
  const seen = new Set<string>();
  for (const m of measured) {
    if (m.lines <= limit) continue;
    seen.add(m.key);
    const cap = known[m.key];
    if (cap === undefined)
      failures.push(`${m.at} is ${m.lines} lines: no ${what} may be longer than ${limit} lines; split it`);
    else if (m.lines > cap)
      failures.push(
        `${m.at} grew to ${m.lines} lines (listed at ${cap}, limit ${limit}): cut it, do not grow it`,
      );
  }
  for (const key of Object.keys(known))
    if (!seen.has(key))
      failures.push(
        `${key} is no longer over ${limit} lines (or is gone): remove it from the list of long ${what}s`,
      );
  return failures;
}

// ---------------------------------------------------------------------------------------------

test("every unit of src/ has a rank", () => {
  const unranked = [...new Set(SOURCES.map((s) => unitOf(s.path)))].filter((u) => !RANK.has(u));
  expect(unranked, "add these folders (or top-level files) to LAYERS in test/architecture.test.ts").toEqual(
    [],
  );
});

test("no file imports from a unit of higher rank (type-only imports included)", () => {
  const failures: string[] = [];
  const used = new Set<string>();
  for (const e of unitEdges()) {
    const [a, b] = [RANK.get(e.from), RANK.get(e.to)];
    if (a === undefined || b === undefined || b <= a) continue;
    const known = e.keys.find((k) => KNOWN_RANK_BREAKS[k] !== undefined);
    if (known) {
      used.add(known);
      continue;
    }
    failures.push(`${e.where}: ${e.from} (rank ${a}) may not import ${e.to} (rank ${b})`);
  }
  for (const key of Object.keys(KNOWN_RANK_BREAKS))
    if (!used.has(key)) failures.push(`${key} no longer breaks a rank: remove it from KNOWN_RANK_BREAKS`);
  expect(failures).toEqual([]);
});

test("no folders form an import cycle", () => {
  const edges = unitEdges().filter((e) => !e.keys.some((k) => KNOWN_RANK_BREAKS[k] !== undefined));
  const graph = new Map<string, Set<string>>();
  for (const e of edges) graph.set(e.from, (graph.get(e.from) ?? new Set()).add(e.to));
  const failures = cycles(graph).map((scc) => {
    const loop = shortestLoop(graph, scc);
    const where = loop.slice(1).map((to, i) => edges.find((e) => e.from === loop[i] && e.to === to)!.where);
    return `${loop.join(" → ")} is a cycle (${where.join("; ")}); the folders ${scc.join(", ")} depend on each other: one import must go`;
  });
  expect(failures).toEqual([]);
});

test(`no function in src/ is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  const measured = SOURCES.flatMap((s) =>
    functionsOf(s).map((f) => ({
      key: `${s.path} ${f.name}`,
      lines: f.lines,
      at: `${s.path}:${f.line} ${f.name}`,
    })),
  );
  expect(lengthFailures(measured, MAX_FUNCTION_LINES, LONG_FUNCTIONS, "function")).toEqual([]);
});

test(`no file in src/ is longer than ${MAX_FILE_LINES} lines`, () => {
  const measured = SOURCES.map((s) => ({ key: s.path, lines: lineCount(s.text), at: s.path }));
  expect(lengthFailures(measured, MAX_FILE_LINES, LONG_FILES, "file")).toEqual([]);
});

describe("the checks themselves", () => {
  const sample = parse(
    "src/butler/sample.ts",
    `import type { A } from "../channels/channel.js";
import { type B, c } from "./c.js";
import { type D } from "../dashboard/d.js";
export { e } from "../errors.js";
export type { F } from "../http/f.js";
type G = import("../admin/g.js").G;
const h = () => import("../a2a/h.js");
const s = "import x from '../server/app.js'"; // a string, not an import
// import { y } from "../main.js";
/* function notOne() { */
export function outer() {
  const inner = () => {
    return \`}\${"{"}\`;
  };
  class K { method() { return function () { return 1; }; } }
  return [inner, K];
}
`,
  );

  test("imports are found wherever a module is named, and told apart as type-only or not", () => {
    expect(importsOf(sample).map((i) => [i.spec, i.typeOnly])).toEqual([
      ["../channels/channel.js", true],
      ["./c.js", false],
      ["../dashboard/d.js", true],
      ["../errors.js", false],
      ["../http/f.js", true],
      ["../admin/g.js", true],
      ["../a2a/h.js", false],
    ]);
  });

  test("functions are named by where they sit and measured from their first line to their last", () => {
    expect(functionsOf(sample).map((f) => [f.name, f.line, f.lines])).toEqual([
      ["h", 7, 1],
      ["outer", 11, 7],
      ["outer/inner", 12, 3],
      ["outer/method", 15, 1],
      ["outer/method/(anonymous)", 15, 1],
    ]);
  });

  test("units, cycles and length failures", () => {
    expect(
      [
        "src/main.ts",
        "src/audit/chain.ts",
        "src/audit/verify.ts",
        "src/channels/slack/x.ts",
        "src/channels/render.ts",
      ].map(unitOf),
    ).toEqual(["main", "audit/chain", "audit", "channels/slack", "channels"]);
    const g = new Map([
      ["a", new Set(["b"])],
      ["b", new Set(["c"])],
      ["c", new Set(["a"])],
      ["d", new Set(["a"])],
    ]);
    expect(cycles(g)).toEqual([["a", "b", "c"]]);
    expect(shortestLoop(g, ["a", "b", "c"])).toEqual(["a", "b", "c", "a"]);
    expect(
      lengthFailures(
        [
          { key: "new", lines: 151, at: "src/x.ts:3 new" },
          { key: "grown", lines: 200, at: "src/x.ts:9 grown" },
          { key: "fine", lines: 150, at: "src/x.ts:1 fine" },
        ],
        150,
        { grown: 180, fine: 160 },
        "function",
      ),
    ).toEqual([
      "src/x.ts:3 new is 151 lines: no function may be longer than 150 lines; split it",
      "src/x.ts:9 grown grew to 200 lines (listed at 180, limit 150): cut it, do not grow it",
      "fine is no longer over 150 lines (or is gone): remove it from the list of long functions",
    ]);
  });
});

test("the policy core is pure: it imports only yaml, zod, diff and its own modules", () => {
  for (const src of SOURCES.filter((s) => s.path.startsWith("src/policy/"))) {
    for (const { spec } of importsOf(src)) {
      const allowed =
        ["yaml", "zod", "diff", "../result.js", "../yaml-file.js"].includes(spec) || spec.startsWith("./");
      expect(allowed, `${src.path} imports ${spec}`).toBe(true);
    }
  }
  // The YAML file parser it shares with provider specs is just as pure.
  for (const { spec } of importsOf(SOURCES.find((s) => s.path === "src/yaml-file.ts")!))
    expect(["yaml", "zod", "./result.js"]).toContain(spec);
});

test("the audit chain and checkpoints are pure, and nothing but the composition roots build the HTTP server", () => {
  const only = (path: string, allowed: string[]) => {
    for (const { spec } of importsOf(SOURCES.find((s) => s.path === path)!))
      expect(allowed, `${path} imports ${spec}`).toContain(spec);
  };
  only("src/audit/chain.ts", ["node:crypto"]);
  only("src/audit/checkpoint.ts", ["node:crypto", "../result.js", "./chain.js"]);
  for (const src of SOURCES) {
    if (src.path === "src/main.ts" || src.path.startsWith("src/server/")) continue;
    for (const { spec } of importsOf(src))
      expect(spec, `${src.path} imports ${spec}`).not.toMatch(/server\/app\.js$/);
  }
});

test("the admin API is described once: only admin/ and the assembler register admin routes", () => {
  const importers = (file: string) =>
    SOURCES.filter((src) =>
      importsOf(src).some((i) => join(dirname(src.path), i.spec).replace(/\.js$/, ".ts") === file),
    ).map((src) => src.path);
  // Registered by the assembler only; the route table read by those routes and the CLI's client.
  expect(importers("src/admin/routes.ts")).toEqual(["src/server/app.ts"]);
  expect(importers("src/admin/route-table.ts").sort()).toEqual([
    "src/admin/routes.ts",
    "src/cli/http-admin.ts",
  ]);
  for (const src of SOURCES) {
    if (src.path.startsWith("src/admin/")) continue;
    expect(src.text.includes("/v1/admin"), `${src.path} names an admin path`).toBe(false);
  }
});

test("the workflow core names no chat platform outside the approver directory", () => {
  const failures: string[] = [];
  for (const src of SOURCES) {
    // The directory tells accounts apart; the port only lists the surfaces (ChannelKind).
    const allowed = ["src/butler/approver-directory.ts", "src/butler/channel-port.ts"];
    if (!src.path.startsWith("src/butler/") || allowed.includes(src.path)) continue;
    const visit = (n: ts.Node) => {
      if (ts.isStringLiteralLike(n) && /^(slack|telegram)$/i.test(n.text)) {
        const line = src.ast.getLineAndCharacterOfPosition(n.getStart(src.ast)).line + 1;
        failures.push(
          `${src.path}:${line} names "${n.text}": platforms are told apart in approver-directory.ts`,
        );
      }
      ts.forEachChild(n, visit);
    };
    visit(src.ast);
  }
  expect(failures).toEqual([]);
});
