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

const MAX_DEPTH = 16;
const MAX_VALUES = 10_000;

/**
 * A JSON object of call parameters: at most 16 levels deep and 10,000 values, and no number JSON
 * cannot round-trip (1e400 parses to Infinity, which no audit line can hold).
 */
export const paramsObject = z
  .record(z.string(), z.unknown(), "must be a JSON object of parameters")
  .superRefine((v, ctx) => {
    const problem = paramsProblem(v);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

const UNSTORABLE = "must not hold text with NUL characters or unpaired surrogates (in values or names)";
const unstorable = (s: string) => s.includes("\u0000") || !s.isWellFormed();

function paramsProblem(root: unknown): string | undefined {
  const stack: [unknown, number, string][] = [[root, 0, ""]];
  let values = 0;
  while (stack.length > 0) {
    const [v, depth, at] = stack.pop()!;
    if (++values > MAX_VALUES) return `must not hold more than ${MAX_VALUES} values`;
    if (typeof v === "number" && !Number.isFinite(v)) return "must not hold numbers too large to represent";
    // Params may be stored (a one-shot request keeps them as jsonb): PostgreSQL refuses NUL, and
    // an unpaired surrogate is not Unicode.
    if (typeof v === "string" && unstorable(v)) return `${UNSTORABLE} (at ${at || "the top"})`;
    if (v !== null && typeof v === "object") {
      if (depth >= MAX_DEPTH) return `must not be nested more than ${MAX_DEPTH} levels deep`;
      if (Array.isArray(v)) v.forEach((x, i) => void stack.push([x, depth + 1, `${at}[${i}]`]));
      else
        for (const [k, x] of Object.entries(v)) {
          if (unstorable(k)) return `${UNSTORABLE} (a name in ${at || "the top level"})`;
          stack.push([x, depth + 1, `${at}.${k.slice(0, 64)}`]);
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
