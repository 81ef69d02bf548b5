/**
 * How `tools` deny patterns and commands are compared: whitespace runs collapse to one space and
 * shell quoting characters are dropped, so `rm  "-rf"` reads as `rm -rf`. A guard rail against
 * casual variations, not a shell parser.
 */
export function normaliseCommand(text: string): string {
  return text
    .replace(/["'\\`]/g, "")
    .replace(/\s+/g, " ")
    .trim();
}
