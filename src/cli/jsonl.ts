import { createReadStream } from "node:fs";

/** One line of a JSONL file, split on `\n` only. */
export interface JsonlLine {
  /** 1-based line number. */
  line: number;
  /** The line's text, or undefined when it is not valid UTF-8. */
  text: string | undefined;
  /** False for a last line with no `\n` after it (a file cut off mid-line). */
  complete: boolean;
}

/**
 * Reads a JSONL file a line at a time, in constant memory. Lines end at the byte `\n` and nowhere
 * else: an export holds U+2028, U+2029 and U+0085 unescaped inside its strings (JSON allows
 * them), and a reader that also splits there (Python's str.splitlines, some editors) would cut
 * lines in two. UTF-8 never uses the byte 0x0A inside a character, so splitting bytes is exact.
 */
export async function* jsonlLines(path: string, maxLineBytes = 64 * 1024 * 1024): AsyncGenerator<JsonlLine> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const decode = (b: Buffer): string | undefined => {
    try {
      return decoder.decode(b);
    } catch {
      return undefined;
    }
  };
  let pending: Buffer[] = [];
  let line = 0;
  for await (const chunk of createReadStream(path)) {
    let buf = chunk as Buffer;
    for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a)) {
      pending.push(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
      line++;
      yield { line, text: decode(Buffer.concat(pending)), complete: true };
      pending = [];
    }
    if (buf.length > 0) {
      pending.push(buf);
      if (pending.reduce((n, b) => n + b.length, 0) > maxLineBytes)
        throw new Error(`${path}: line ${line + 1} is longer than ${maxLineBytes} bytes: not a JSONL file`);
    }
  }
  if (pending.length > 0) yield { line: line + 1, text: decode(Buffer.concat(pending)), complete: false };
}
