import { z } from "zod";
import { AppError } from "../errors.js";

/**
 * Text from agents and operators: bounded, well-formed Unicode, and free of U+0000 (which
 * PostgreSQL cannot store). Everything an agent sends is checked with these before use.
 */
export const safeText = (max: number) =>
  z
    .string()
    .max(max, `must be at most ${max} characters`)
    .refine((s) => s.isWellFormed(), "must be valid Unicode text (it has an unpaired surrogate)")
    .refine((s) => !s.includes("\u0000"), "must not contain NUL characters");

/**
 * Whether PostgreSQL can store `s` exactly, in a text column or inside jsonb: well-formed Unicode
 * (no unpaired surrogate) without U+0000.
 */
export function storable(s: string): boolean {
  return s.isWellFormed() && !s.includes("\u0000");
}

/**
 * The first place in agent-written JSON holding text PostgreSQL cannot store (see `storable`), in
 * a value or a key, as `params.a.b[2]` (a key that is not a plain name shows as `[a key]`: it is
 * the agent's text); undefined when there is none.
 */
export function unstorableAt(value: unknown, root = "params"): string | undefined {
  const stack: [unknown, string][] = [[value, root]];
  while (stack.length > 0) {
    const [v, at] = stack.pop()!;
    if (typeof v === "string") {
      if (!storable(v)) return at;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push([v[i], `${at}[${i}]`]);
    } else if (v !== null && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        const name = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k) ? `${at}.${k}` : `${at}[a key]`;
        if (!storable(k)) return name;
        stack.push([x, name]);
      }
    }
  }
  return undefined;
}

/**
 * Text that arrives where refusing it is impossible (a chat platform's payload, which it would
 * only send again), mended so that it can be stored: unpaired surrogates and U+0000 become U+FFFD.
 */
export function mendText(s: string): string {
  const wf = s.isWellFormed() ? s : s.toWellFormed();
  return wf.includes("\u0000") ? wf.replaceAll("\u0000", "\uFFFD") : wf;
}

const MAX_DEPTH = 16;
const MAX_VALUES = 10_000;

/**
 * A JSON object of call parameters: at most 16 levels deep and 10,000 values, no number JSON
 * cannot round-trip (1e400 parses to Infinity, which no audit line can hold), and no name or text
 * PostgreSQL cannot store (NUL, unpaired surrogates): the problem is named by where it is.
 */
export const paramsObject = z
  .record(z.string(), z.unknown(), "must be a JSON object of parameters")
  .superRefine((v, ctx) => {
    const problem = paramsProblem(v);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** What is wrong with a params object (see `paramsObject`), or undefined when nothing is. */
export function paramsProblem(root: unknown): string | undefined {
  const stack: [unknown, number, string][] = [[root, 0, ""]];
  let values = 0;
  const unstorable = (where: string, what: string) =>
    `${what} at ${where || "the top"} holds a NUL character or an unpaired surrogate, which cannot be stored`;
  while (stack.length > 0) {
    const [v, depth, where] = stack.pop()!;
    if (++values > MAX_VALUES) return `must not hold more than ${MAX_VALUES} values`;
    if (typeof v === "number" && !Number.isFinite(v)) return "must not hold numbers too large to represent";
    if (typeof v === "string" && !storable(v)) return unstorable(where, "the text");
    if (v !== null && typeof v === "object") {
      if (depth >= MAX_DEPTH) return `must not be nested more than ${MAX_DEPTH} levels deep`;
      if (Array.isArray(v))
        for (let i = 0; i < v.length; i++) stack.push([v[i], depth + 1, `${where}[${i}]`]);
      else
        for (const [k, x] of Object.entries(v)) {
          const name = /^[A-Za-z_][\w-]*$/.test(k) ? k : JSON.stringify(k);
          const path = where ? `${where}.${name}` : name;
          if (!storable(k)) return unstorable(path, "the name");
          stack.push([x, depth + 1, path]);
        }
    }
  }
  return undefined;
}

const TYPE_WORDS: Record<string, string> = {
  string: "a string",
  number: "a number",
  object: "a JSON object",
  record: "a JSON object",
  array: "an array",
  boolean: "true or false",
};

/**
 * Validates `value` (a request body or query) with a zod schema. On failure throws INVALID_INPUT
 * naming every problem by its location, e.g. `body.action: is required`.
 */
export function parseInput<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  if (where === "body" && (value === undefined || value === null)) {
    throw new AppError("INVALID_INPUT", "the request needs a JSON body (Content-Type: application/json)");
  }
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.slice(0, 20).map((i) => {
    const path = [where, ...i.path.map(String)].join(".");
    if (i.code === "unrecognized_keys")
      return `${path}: unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `'${k}'`).join(", ")}`;
    if (i.code === "invalid_type") {
      const missing = valueAt(value, i.path) === undefined;
      return `${path}: ${missing ? "is required" : `must be ${TYPE_WORDS[i.expected] ?? i.expected}`}`;
    }
    return `${path}: ${i.message}`;
  });
  throw new AppError("INVALID_INPUT", problems.join("; "), { problems });
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k as string];
  }
  return v;
}
