/** Where CLI output goes; injectable so tests can run commands in-process. */
export interface CliIo {
  stdout: {
    write(s: string): boolean;
    once?(event: "drain" | "error", cb: () => void): unknown;
    off?(event: "drain" | "error", cb: () => void): unknown;
  };
  stderr: { write(s: string): boolean };
  env: Record<string, string | undefined>;
  /** Standard input, for secrets that must not appear in argv (default: the process's). */
  stdin?: AsyncIterable<string | Buffer>;
  /** Where the project is looked for, from here upwards (default: the process's working directory). */
  cwd?: string;
  /** Why the data directory is the one in `env` (set by `main`, for messages). */
  dataDirFrom?: string;
}

// C0 and C1 control characters, and every character that reorders or hides text: bidi
// embeddings, overrides and isolates, zero-width and format characters, Unicode tags (which can
// spell out text no one sees), variation selectors and the other default-ignorable code points.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/gu;
const UNSAFE_BUT_LINES = /(?![\n\t])[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/gu;

const show = (c: string) => {
  const n = c.codePointAt(0)!;
  if (n <= 0xff) return `\\x${n.toString(16).padStart(2, "0")}`;
  return n <= 0xffff ? `\\u${n.toString(16).padStart(4, "0")}` : `\\u{${n.toString(16)}}`;
};

/**
 * Makes one line of text safe for a terminal: agent-written values (and policy files) could carry
 * escape sequences that rewrite the screen, or characters that make text read differently than it
 * is, so each such character is shown as \xNN or \uNNNN instead.
 */
export function termSafe(s: string | null | undefined): string {
  if (s === null || s === undefined) return "";
  return s.replace(UNSAFE, show);
}

/** Like termSafe, for multi-line output: newlines and tabs are kept. */
export function termSafeLines(s: string): string {
  return s.replace(UNSAFE_BUT_LINES, show);
}

/** Thrown when the reader of our output went away (`butler audit export | head`). */
export class OutputClosed extends Error {}

let outputClosed = false;

/** Called when stdout fails with EPIPE: the reader is gone, so streaming commands stop quietly. */
export function markOutputClosed(): void {
  outputClosed = true;
}

/** Writes with backpressure, so that long exports stream in constant memory. */
export async function writeOut(io: CliIo, s: string): Promise<void> {
  if (outputClosed) throw new OutputClosed("output closed");
  const out = io.stdout;
  if (!out.write(s) && out.once && out.off) {
    // A closed pipe never drains; its error ends the wait too.
    await new Promise<void>((resolve) => {
      const done = () => {
        out.off!("drain", done);
        out.off!("error", done);
        resolve();
      };
      out.once!("drain", done);
      out.once!("error", done);
    });
  }
  if (outputClosed) throw new OutputClosed("output closed");
}
