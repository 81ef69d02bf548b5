import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AuditEventInput, createAuditLog, readHead } from "../../src/audit/audit-log.js";
import { loadConfig } from "../../src/config.js";
import { ensureDataDir } from "../../src/data-dir.js";
import { openDatabase } from "../../src/db/client.js";
import { migrate } from "../../src/db/migrate.js";
import { createLogger } from "../../src/logger.js";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { verifyExport } from "../helpers/outside-verifier.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";

/**
 * What docs/audit.md says about the exported text: which characters are escaped and which are
 * not, that lines split on `\n` only, and what happens to numbers above 2^53, checked through the
 * real export (`butler audit export`) and both verifiers.
 */

const log = createLogger("silent");
const C0 = Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join(""); // U+0001..U+001F
const RAW = "\u007f\u0080\u0085\u009f\u2028\u2029\u202e\u2066\u200b\ufeff/é";

describe(`the exported text (${ENGINE})`, () => {
  let t: TestEnv;
  let lines: string[];
  let exportText: string;

  /** Appends events straight into the database, as the server would, then closes it again. */
  async function append(
    inputs: AuditEventInput[],
  ): Promise<{ error?: unknown; headBefore: number; headAfter: number }> {
    await ensureDataDir(t.dataDir);
    const database = await openDatabase(loadConfig(t.env).database, log);
    try {
      await migrate(database);
      const audit = createAuditLog({ database, clock: new FakeClock(), log });
      const headBefore = (await readHead(database.db)).seq;
      let error: unknown;
      for (const i of inputs) await audit.append(i).catch((e) => (error = e));
      await audit.close();
      return { error, headBefore, headAfter: (await readHead(database.db)).seq };
    } finally {
      await database.close();
    }
  }

  beforeAll(async () => {
    t = await createTestEnv();
    await append([
      { type: "x.first" },
      {
        type: "x.text",
        agent: "a",
        reason: `c0 ${C0} raw ${RAW} quote " backslash \\ nul \u0000 lone \ud800`,
        details: { [`key ${C0}${RAW}`]: `value ${C0}${RAW}`, list: [RAW, C0] },
      },
      {
        type: "x.numbers",
        details: {
          two_to_64: 2 ** 64,
          above_2_53: 2 ** 53 + 2,
          parsed_2_53_plus_1: JSON.parse('{"n":9007199254740993}').n,
          negative: -(2 ** 60),
          e21: 1e21,
          tiny: 5e-324,
          fraction: 0.1,
          negative_zero: -0,
          max: Number.MAX_VALUE,
        },
      },
      { type: "x.last" },
    ]);
    const r = await t.cli(["audit", "export"]);
    expect(r.code, r.stderr).toBe(0);
    exportText = r.stdout;
    lines = exportText.split("\n");
  });
  afterAll(() => t?.cleanup());

  test("C0 controls, quote and backslash are escaped; nothing else is", () => {
    const text = lines[1]!;
    // No raw C0 control anywhere in an export line (so no raw \n or \r inside one).
    expect(text).not.toMatch(/[\u0000-\u001f]/);
    const escaped =
      "\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f";
    expect(text).toContain(
      `"reason":"c0 ${escaped} raw ${RAW} quote \\" backslash \\\\ nul \uFFFD lone \uFFFD"`,
    );
    // The same in field names and nested values.
    expect(text).toContain(`"key ${escaped}${RAW}":"value ${escaped}${RAW}"`);
    expect(text).toContain(`"list":["${RAW}","${escaped}"]`);
    // Written raw: DEL, C1 controls (U+0085 among them), U+2028, U+2029, bidi and zero-width.
    for (const c of RAW) expect(text.includes(c), `U+${c.charCodeAt(0).toString(16)} is raw`).toBe(true);
  });

  test("lines split on \\n only: an event holding U+2028, U+2029 and U+0085 round-trips and verifies", async () => {
    expect(exportText.endsWith("\n")).toBe(true);
    expect(lines).toHaveLength(5); // four events and the empty string after the last \n
    expect(JSON.parse(lines[1]!).reason).toBe(
      `c0 ${C0} raw ${RAW} quote " backslash \\ nul \uFFFD lone \uFFFD`,
    );
    expect(verifyExport(exportText)).toEqual({ ok: true, count: 4 });
    const file = join(t.dataDir, "..", "export.jsonl");
    await writeFile(file, exportText);
    const r = await t.cli(["audit", "verify-export", file]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toContain("export verified: 4 events, hash chain intact through sequence 4");
    // A reader that also ends lines at U+2028, U+2029 or U+0085 (like Python's str.splitlines)
    // cuts the event in two: neither half is JSON.
    const splitlines = exportText.split(/\r\n|[\n\r\u2028\u2029\u0085\u000b\u000c\u001c-\u001e]/);
    expect(splitlines.length).toBeGreaterThan(5);
    expect(() => splitlines.filter(Boolean).map((l) => JSON.parse(l))).toThrow();
    expect((await t.cli(["audit", "verify"])).code).toBe(0);
  });

  test("numbers above 2^53 are the doubles that hold them, hashed and exported as JSON.stringify writes them", async () => {
    const text = lines[2]!;
    const numbers = JSON.parse(text);
    expect(text).toContain('"two_to_64":18446744073709552000');
    expect(text).toContain('"above_2_53":9007199254740994');
    // A JSON body's 2^53 + 1 is already 2^53 once parsed: that is what is recorded.
    expect(text).toContain('"parsed_2_53_plus_1":9007199254740992');
    // The shortest decimal that reads back as the same double: -2^60 is written -1152921504606847000.
    expect(text).toContain('"negative":-1152921504606847000');
    expect(text).toContain('"e21":1e+21');
    expect(text).toContain('"tiny":5e-324');
    expect(text).toContain('"fraction":0.1');
    expect(text).toContain('"negative_zero":0');
    expect(text).toContain('"max":1.7976931348623157e+308');
    expect(numbers.two_to_64).toBe(2 ** 64);
    // The database kept each decimal exactly: the stored event re-hashes to what was written.
    expect((await t.cli(["audit", "verify"])).stdout).toContain("audit chain verified: 4 events");
    expect(verifyExport(exportText).ok).toBe(true);
  });

  test("a line whose number text differs from what Butler writes is refused, although it hashes the same in JavaScript", async () => {
    const exact = exportText.replace('"two_to_64":18446744073709552000', '"two_to_64":18446744073709551616');
    expect(exact).not.toBe(exportText);
    // A verifier that parses into doubles cannot tell the two apart…
    expect(verifyExport(exact).ok).toBe(true);
    // …so verify-export refuses any line that is not exactly the canonical JSON of its values.
    const file = join(t.dataDir, "..", "exact.jsonl");
    await writeFile(file, exact);
    const r = await t.cli(["audit", "verify-export", file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("line 3: not written as Butler writes lines (canonical JSON)");
    expect(r.stdout).toContain("18446744073709551616");
    expect(r.stdout).toContain("where canonical JSON has");
  });

  test("a BigInt is refused: nothing is written and the caller gets the error", async () => {
    const r = await append([{ type: "x.bigint", details: { n: 2n ** 64n } }]);
    expect(String(r.error)).toContain("canonical JSON cannot hold a bigint");
    expect(r.headAfter).toBe(r.headBefore);
  });
});
