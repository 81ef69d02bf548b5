import { type ParseArgsConfig, parseArgs } from "node:util";
import { type CliIo, termSafeLines } from "./output.js";

/**
 * One `butler` command: the words that name it, its usage and what it does (for `--help`), and
 * the function that runs it. The table of all of them (`commands/index.ts`) drives both dispatch
 * and help, so that a command is written down once.
 */
export interface Command {
  /** The words that name it, e.g. `policy validate`. */
  name: string;
  /** Its arguments and options, as shown after the name, e.g. `<project> <from> [<to>]`. */
  usage: string;
  /** What it does: one short line, or a few (they are indented in the command list). */
  summary: string;
  /** Goes through the admin operations: a running server's admin API, or the database. */
  admin?: true;
  /** Runs it with the arguments after its name; resolves to the exit code. */
  run(argv: string[], io: CliIo): Promise<number>;
}

/** A mistake in how the command was called: exit code 2, with a pointer to the help. */
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | undefined>;

/** Parses a command's options (every command also takes --json) and checks the number of positionals. */
export function args(
  argv: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
  positionals: [min: number, max: number],
) {
  const parsed = parseArgs({
    args: argv,
    options: { ...options, json: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  const [min, max] = positionals;
  if (parsed.positionals.length < min) throw new UsageError("missing argument");
  if (parsed.positionals.length > max)
    throw new UsageError(`unexpected argument '${parsed.positionals[max]}'`);
  return parsed as { values: Values; positionals: string[] };
}

/** Prints a command's result: JSON, or text made safe for a terminal (policy files and agents write some of it). */
export function print(io: CliIo, json: unknown, text: string, asJson: boolean) {
  io.stdout.write(
    asJson ? `${JSON.stringify(json, null, 2)}\n` : termSafeLines(text.endsWith("\n") ? text : `${text}\n`),
  );
}

/** The value of a required string option. */
export function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** The value of an optional string option. */
export function optional(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}
