import pino from "pino";
import { createSecrets, type Secrets } from "./secrets.js";

export type Logger = pino.Logger;
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
/** `auto`: readable lines when standard error is a terminal, JSON lines otherwise (LOG_FORMAT). */
export type LogFormat = "auto" | "pretty" | "json";

/**
 * The one logger: pino (what fastify uses), on stderr so that stdout stays free for command
 * output. Authorization headers and token fields are redacted wherever they appear, and every
 * finished line (message, error messages and stacks, nested fields, child bindings) goes through
 * `secrets.redact` before it is written or formatted: no configured secret and no URL credential
 * reaches the log, whatever library error carried it, in either format.
 *
 * Formats: JSON lines (for machines: journald, a log shipper), or one readable line per event
 * (`prettyLogLine`) for a person at a terminal. `auto` picks by whether stderr is a terminal; a
 * destination passed in (tests) gets JSON unless `pretty` is asked for.
 */
export function createLogger(
  level: LogLevel,
  destination?: pino.DestinationStream,
  secrets: Pick<Secrets, "redact"> = createSecrets(),
  format: LogFormat = "auto",
): Logger {
  const stderr = destination === undefined;
  const out = destination ?? pino.destination(2);
  const pretty = resolveLogFormat(format, stderr && process.stderr.isTTY === true) === "pretty";
  const color = pretty && stderr && process.stderr.hasColors?.() === true;
  return pino(
    {
      level,
      redact: {
        paths: ["req.headers.authorization", "headers.authorization", "token", "*.token", "adminToken"],
        censor: "[redacted]",
      },
      hooks: { streamWrite: (line) => secrets.redact(line) },
    },
    // Our own formatter rather than pino-pretty: pino-pretty brings a dozen dependencies and
    // formats in a worker thread (lines written after exit can be lost); this one is synchronous,
    // a few lines long, and formats the line after redaction.
    pretty ? { write: (line: string) => out.write(prettyLogLine(line, { color })) } : out,
  );
}

/** The format in use: `auto` is pretty exactly when the log goes to a terminal. */
export function resolveLogFormat(format: LogFormat, terminal: boolean): "pretty" | "json" {
  return format === "auto" ? (terminal ? "pretty" : "json") : format;
}

const LEVELS: Record<number, [name: string, color: string]> = {
  10: ["TRACE", "90"],
  20: ["DEBUG", "36"],
  30: ["INFO ", "32"],
  40: ["WARN ", "33"],
  50: ["ERROR", "31"],
  60: ["FATAL", "35"],
};
/** pino's own fields, shown in the line's head or not at all. */
const HEAD = new Set(["level", "time", "msg", "pid", "hostname", "v"]);

/**
 * One pino JSON line as one readable line: local time, level, message, then the other fields as
 * `key=value` (strings bare when they hold no space, quote, `=` or control character, otherwise
 * JSON-quoted; objects as compact JSON; an error as its type and message). Control characters are
 * always escaped, so text an agent wrote cannot forge a second log line. For an error or fatal
 * event whose error has a stack, the stack follows on indented lines. A line that is not pino
 * JSON is passed through with its control characters escaped.
 */
export function prettyLogLine(line: string, opts: { color?: boolean } = {}): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
    if (o === null || typeof o !== "object" || Array.isArray(o)) throw new Error("not an object");
  } catch {
    return `${escapeControls(line.replace(/\n$/, ""))}\n`;
  }
  const level = typeof o.level === "number" ? o.level : 30;
  const [name, code] = LEVELS[level] ?? [`L${level}`.padEnd(5), "0"];
  const parts = [
    typeof o.time === "number" ? localTime(new Date(o.time)) : "--:--:--.---",
    opts.color ? `\u001b[${code}m${name}\u001b[0m` : name,
  ];
  if (o.msg !== undefined && o.msg !== "") parts.push(escapeControls(String(o.msg)));
  let stack: string | undefined;
  for (const [k, v] of Object.entries(o)) {
    if (HEAD.has(k) || v === undefined) continue;
    // Keys are escaped as values are: a field name can come from a caller too.
    const key = quote(k);
    if (isError(v)) {
      parts.push(`${key}=${quote(`${v.type ? `${v.type}: ` : ""}${v.message}`)}`);
      if (level >= 50) stack = v.stack.split("\n").slice(v.message.split("\n").length).join("\n");
    } else parts.push(`${key}=${typeof v === "string" ? quote(v) : escapeControls(JSON.stringify(v))}`);
  }
  const head = parts.join(" ").trimEnd();
  if (!stack) return `${head}\n`;
  // The stack after its first lines, which repeat the message shown above.
  const frames = stack.split("\n");
  return `${head}\n${frames.map((f) => `    ${escapeControls(f.trim())}`).join("\n")}\n`;
}

function localTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** An error as pino's serializer writes it (message and stack); any other object is shown whole. */
function isError(v: unknown): v is { type?: string; message: string; stack: string } {
  return (
    v !== null &&
    typeof v === "object" &&
    typeof (v as { message?: unknown }).message === "string" &&
    typeof (v as { stack?: unknown }).stack === "string"
  );
}

function quote(s: string): string {
  return s !== "" && /^[^\s"'=\\\p{Cc}]+$/u.test(s) ? s : escapeControls(JSON.stringify(s));
}

/** Newlines, escapes and other control characters as JSON escapes: one event, one line. */
function escapeControls(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) =>
    c === "\n"
      ? "\\n"
      : c === "\t"
        ? "\\t"
        : c === "\r"
          ? "\\r"
          : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
