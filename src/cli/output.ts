/** Where CLI output goes; injectable so tests can run commands in-process. */
export interface CliIo {
  stdout: { write(s: string): boolean; once?(event: "drain", cb: () => void): unknown };
  stderr: { write(s: string): boolean };
  env: Record<string, string | undefined>;
}

/**
 * Makes text safe for a terminal: agent-written values could carry escape sequences that rewrite
 * the screen, so every control character is shown as \xNN instead.
 */
export function termSafe(s: string | null | undefined): string {
  if (s === null || s === undefined) return "";
  return s.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** Writes with backpressure, so that long exports stream in constant memory. */
export async function writeOut(io: CliIo, s: string): Promise<void> {
  if (!io.stdout.write(s) && io.stdout.once) {
    await new Promise<void>((resolve) => io.stdout.once!("drain", resolve));
  }
}
