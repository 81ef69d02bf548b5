import { describe, expect, test } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger, type LogFormat, prettyLogLine, resolveLogFormat } from "../src/logger.js";
import { createSecrets } from "../src/secrets.js";

// 2026-05-04T10:11:12.345Z, shown in the machine's own time zone.
const T = Date.UTC(2026, 4, 4, 10, 11, 12, 345);
const d = new Date(T);
const p = (n: number, w = 2) => String(n).padStart(w, "0");
const AT = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
const line = (o: Record<string, unknown>) =>
  JSON.stringify({ level: 30, time: T, pid: 4242, hostname: "box", ...o });

describe("prettyLogLine: one readable line per event", () => {
  test.each<[string, Record<string, unknown>, string]>([
    [
      "local time, level, message, fields; pino's pid and hostname left out",
      { msg: "listening", url: "http://127.0.0.1:8080", port: 8080 },
      `${AT} INFO  listening url=http://127.0.0.1:8080 port=8080\n`,
    ],
    ["each level by name", { level: 40, msg: "slow" }, `${AT} WARN  slow\n`],
    ["fatal", { level: 60, msg: "gone" }, `${AT} FATAL gone\n`],
    ["debug", { level: 20, msg: "x" }, `${AT} DEBUG x\n`],
    [
      "text with spaces, quotes or = is quoted; empty text too",
      { msg: "m", reason: "no policy grants stripe:*", q: 'a"b', eq: "a=b", empty: "" },
      `${AT} INFO  m reason="no policy grants stripe:*" q="a\\"b" eq="a=b" empty=""\n`,
    ],
    [
      "numbers, booleans, null and objects as compact JSON",
      { msg: "m", n: 1.5, ok: false, none: null, obj: { a: [1, 2], b: "c d" } },
      `${AT} INFO  m n=1.5 ok=false none=null obj={"a":[1,2],"b":"c d"}\n`,
    ],
    [
      "an error below error level: type and message only",
      {
        level: 40,
        msg: "retrying",
        err: { type: "Error", message: "ECONNREFUSED", stack: "Error: x\n    at f" },
      },
      `${AT} WARN  retrying err="Error: ECONNREFUSED"\n`,
    ],
    [
      "an error event: its stack follows, indented, without repeating the message",
      {
        level: 50,
        msg: "unhandled error",
        reqId: "r-1",
        err: {
          type: "TypeError",
          message: "boom",
          stack: "TypeError: boom\n    at f (a.js:1:2)\n    at g (b.js:3:4)",
        },
      },
      `${AT} ERROR unhandled error reqId=r-1 err="TypeError: boom"\n    at f (a.js:1:2)\n    at g (b.js:3:4)\n`,
    ],
    [
      "control characters in a message or a field cannot forge a second line",
      { msg: "agent said\n12:00:00.000 INFO  approved", reason: "x\r\ny\u2028z\u0007" },
      `${AT} INFO  agent said\\n12:00:00.000 INFO  approved reason="x\\r\\ny\\u2028z\\u0007"\n`,
    ],
    [
      "a field's name with a newline or an escape cannot forge a line or colour the terminal",
      { msg: "m", "a\n12:00:00.000 INFO  forged": 1, "k\u001b[31m": 2 },
      `${AT} INFO  m "a\\n12:00:00.000 INFO  forged"=1 "k\\u001b[31m"=2\n`,
    ],
    [
      "an object with a message but no stack is not taken for an error: shown whole",
      { msg: "m", res: { ok: false, message: "x", channel: "C1" } },
      `${AT} INFO  m res={"ok":false,"message":"x","channel":"C1"}\n`,
    ],
    [
      "an error whose message has two lines: the stack's frames follow once, the message not again",
      {
        level: 50,
        msg: "failed",
        err: { type: "Error", message: "line1\nline2", stack: "Error: line1\nline2\n    at f (a.js:1:2)" },
      },
      `${AT} ERROR failed err="Error: line1\\nline2"\n    at f (a.js:1:2)\n`,
    ],
    ["no message: only the fields", { msg: "", channel: "slack" }, `${AT} INFO  channel=slack\n`],
  ])("%s", (_, o, expected) => {
    expect(prettyLogLine(line(o))).toBe(expected);
  });

  test("a line that is not pino's JSON passes through, on one line", () => {
    expect(prettyLogLine("plain text\nsecond\n")).toBe("plain text\\nsecond\n");
    expect(prettyLogLine("[1,2]\n")).toBe("[1,2]\n");
  });

  test("colour marks the level only, when asked for", () => {
    expect(prettyLogLine(line({ level: 50, msg: "m" }), { color: true })).toBe(
      `${AT} \u001b[31mERROR\u001b[0m m\n`,
    );
  });
});

describe("which format", () => {
  test.each<[LogFormat, boolean, "pretty" | "json"]>([
    ["auto", true, "pretty"],
    ["auto", false, "json"],
    ["pretty", false, "pretty"],
    ["json", true, "json"],
  ])("LOG_FORMAT=%s with a terminal=%s: %s", (format, terminal, expected) => {
    expect(resolveLogFormat(format, terminal)).toBe(expected);
  });

  test("LOG_FORMAT is auto by default, and a bad value is named", () => {
    expect(loadConfig({}).logFormat).toBe("auto");
    expect(loadConfig({ LOG_FORMAT: "json" }).logFormat).toBe("json");
    expect(loadConfig({ LOG_FORMAT: "pretty" }).logFormat).toBe("pretty");
    expect(() => loadConfig({ LOG_FORMAT: "yaml" })).toThrow(/LOG_FORMAT must be auto .*, pretty or json/);
  });

  test("a destination given in gets JSON unless pretty is asked for; secrets are redacted in both", () => {
    const secret = "xoxb-1234567890-abcdefghij";
    const secrets = createSecrets([["SLACK_BOT_TOKEN", secret]]);
    const written: Record<string, string[]> = { auto: [], json: [], pretty: [] };
    for (const format of ["auto", "json", "pretty"] as const) {
      const log = createLogger(
        "info",
        { write: (s: string) => void written[format]!.push(s) },
        secrets,
        format,
      );
      log.warn(
        { err: new Error(`slack refused ${secret}`), url: `https://u:${secret}@x` },
        `token ${secret}`,
      );
    }
    for (const format of ["auto", "json"]) {
      const o = JSON.parse(written[format]![0]!) as Record<string, unknown>;
      expect(o).toMatchObject({ level: 40, msg: "token [redacted:SLACK_BOT_TOKEN]" });
    }
    expect(written.pretty).toHaveLength(1);
    const pretty = written.pretty![0]!;
    expect(pretty).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} WARN {2}token \[redacted:SLACK_BOT_TOKEN\] err="Error: slack refused \[redacted:SLACK_BOT_TOKEN\]" url=https:\/\/\[redacted\]@x\n$/,
    );
    expect(pretty).not.toContain("abcdefghij");
  });
});
