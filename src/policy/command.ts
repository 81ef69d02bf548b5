/**
 * The services whose deny patterns are text looked for in every string of the call's parameters
 * (a shell tool's command, an MCP tool's arguments) rather than resource patterns.
 */
export function textDenyService(service: string): boolean {
  return service === "tools" || service === "mcp";
}

/**
 * How `tools` deny patterns and commands are compared: whitespace runs collapse to one space and
 * shell quoting characters are dropped, so `rm  "-rf"` reads as `rm -rf`. A guard rail against
 * casual variations, not a shell parser.
 */
export function normaliseCommand(text: string): string {
  // Most commands are already normal; checking that is a scan, where the rewrite is two regexes.
  if (isNormal(text)) return text;
  return text
    .replace(/["'\\`]/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * True when `normaliseCommand` would return `text` unchanged: printable ASCII only, no quoting
 * characters, and spaces only single and between other characters. Anything else (tabs, other
 * Unicode spaces, any non-ASCII character) takes the full rewrite.
 */
function isNormal(text: string): boolean {
  const last = text.length - 1;
  for (let i = 0; i <= last; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20) {
      if (i === 0 || i === last || text.charCodeAt(i + 1) === 0x20) return false;
    } else if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x27 || c === 0x5c || c === 0x60) {
      return false;
    }
  }
  return true;
}
