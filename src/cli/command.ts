import { parseArgs } from "node:util";
import { type CliIo, termSafeLines } from "./output.js";

/** One option of a command: how it is parsed, and what `--help` says of it. */
export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: true;
  /** The placeholder of its value in help, e.g. `P` for `--project P`. */
  value?: string;
  /** What it does, for `butler <command> --help`. */
  help: string;
}

/** What a command's implementation receives: its parsed options and positional arguments. */
export interface Parsed {
  values: Values;
  positionals: string[];
}

/**
 * One `butler` command: the words that name it, its usage, options and an example (for `--help`),
 * and the function that runs it. The table of all of them (`commands/index.ts`) drives both
 * dispatch and help, so that a command is written down once. The table is light: each `run`
 * imports its implementation (`cli/run/`) when called, so `butler --help` loads no server.
 */
export interface Command {
  /** The words that name it, e.g. `policy validate`. */
  name: string;
  /** Its arguments and options, as shown after the name, e.g. `<project> <from> [<to>]`. */
  usage: string;
  /** What it does: one short line, or a few (they are indented in the command list). */
  summary: string;
  /** Its options (besides --json and --help, which every command takes). */
  options?: Readonly<Record<string, OptionSpec>>;
  /** How many positional arguments it takes: [min, max]. */
  positionals: readonly [min: number, max: number];
  /** One complete command line, as a user would type it (without the leading `butler`). */
  example: string;
  /** Goes through the admin operations: a running server's admin API, or the database. */
  admin?: true;
  /** Reads the project's files (its policies or providers directory) when not given a path. */
  project?: true;
  /** Runs it with its parsed arguments; resolves to the exit code. */
  run(args: Parsed, io: CliIo): Promise<number>;
}

/** A mistake in how the command was called: exit code 2, with a pointer to the help. */
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

/** Parses a command's arguments (every command also takes --json) and checks the number of positionals. */
export function args(c: Pick<Command, "name" | "options" | "positionals">, argv: string[]): Parsed {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {
    json: { type: "boolean" },
  };
  for (const [name, o] of Object.entries(c.options ?? {}))
    options[name] = o.multiple ? { type: o.type, multiple: true } : { type: o.type };
  const see = `see butler ${c.name} --help`;
  let parsed: ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${parseArgsProblem(e, options)} for butler ${c.name}; ${see}`);
  }
  const [min, max] = c.positionals;
  if (parsed.positionals.length < min) throw new UsageError(`missing argument for butler ${c.name}; ${see}`);
  if (parsed.positionals.length > max)
    // Named by position, not value: an argument typed by mistake can be a secret.
    throw new UsageError(
      `unexpected argument (argument ${max + 1}; it takes ${max}) for butler ${c.name}; ${see}`,
    );
  return parsed as Parsed;
}

/** Node's parseArgs errors, said plainly (its own text suggests `--` quoting, which confuses more than it helps). */
function parseArgsProblem(e: unknown, options: Record<string, { type: string }>): string {
  const err = e as NodeJS.ErrnoException;
  const known = Object.keys(options)
    .map((o) => `--${o}`)
    .join(", ");
  const option = /'(-{1,2}[^' ]*)/.exec(err.message ?? "")?.[1] ?? "";
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `unknown option '${option}' (it takes ${known})`;
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE")
    return options[option.replace(/^-+/, "")]?.type === "boolean"
      ? `option '${option}' takes no value`
      : `option '${option}' needs a value`;
  if (err.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") return "unexpected argument";
  throw e;
}

/** Prints a command's result: JSON, or text made safe for a terminal (policy files and agents write some of it). */
export function print(io: CliIo, json: unknown, text: string, asJson: boolean) {
  io.stdout.write(
    asJson ? `${JSON.stringify(json, null, 2)}\n` : termSafeLines(text.endsWith("\n") ? text : `${text}\n`),
  );
}

/** The value of a required string option. */
export function required(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** The value of an optional string option. */
export function optional(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** The values of a repeatable string option. */
export function listOf(v: unknown): string[] {
  return Array.isArray(v) ? (v as string[]) : [];
}

/**
 * A value with every object key in snake_case (`tokenId` → `token_id`), the one convention of the
 * CLI's JSON. Only for values whose keys are all names (records of the code's own types), never
 * for data whose keys someone else chose (a call's parameters).
 */
export function snakeKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(snakeKeys);
  if (v === null || typeof v !== "object" || v instanceof Date) return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), snakeKeys(x)]),
  );
}
