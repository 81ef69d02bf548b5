import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { cleanText, definitionOf, hashOf } from "../../src/providers/mcp-pins.js";
import { parseMcpServerFile } from "../../src/providers/mcp-server-spec.js";
import { loadProviders } from "../../src/providers/provider-gateway.js";
import { formatIssue } from "../../src/yaml-file.js";

const GOOD = `name: files
display_name: Files
url: http://127.0.0.1:9/mcp
auth: { type: bearer, credential: FILES_MCP_TOKEN }
op_groups:
  read: { default: allow, kind: read }
  write: { default: deny }
tools:
  - name: read_file
    op_group: read
    params: { path: { type: string, required: true } }
  - name: write-file.v2
    op_group: write
    approval: each_call
`;

const problems = (text: string) => {
  const r = parseMcpServerFile({ file: "files.yaml", text });
  return r.ok ? [] : r.error.map(formatIssue);
};

describe("mcp_servers/*.yaml", () => {
  test("a server compiles to a provider whose operations are its tools, each the action mcp:<server>:<tool>", () => {
    const r = parseMcpServerFile({ file: "files.yaml", text: GOOD });
    if (!r.ok) throw new Error(r.error.map(formatIssue).join("\n"));
    const spec = r.value;
    expect(spec.service).toBe("mcp");
    expect(spec.mcp).toEqual({
      connection: { transport: "http", url: "http://127.0.0.1:9/mcp" },
      recheckMs: 60_000,
    });
    const read = spec.operations.get("read_file")!;
    expect(read).toMatchObject({
      action: "mcp:files:read_file",
      resource: "mcp://files/read_file",
      read: true,
      params: { path: { type: "string", required: true } },
    });
    expect(spec.operations.get("write-file.v2")).toMatchObject({ approval: "each_call", read: false });
  });

  test("problems are reported with their place: both transports, keys of the other transport, unknown group, typos", () => {
    expect(
      problems(GOOD.replace("url: http://127.0.0.1:9/mcp", "url: http://127.0.0.1:9/mcp\ncommand: node")),
    ).toEqual(
      expect.arrayContaining([
        expect.stringContaining("needs exactly one of url (Streamable HTTP) and command (stdio)"),
        expect.stringContaining("auth: is for an HTTP server (url)"),
      ]),
    );
    expect(problems(`${GOOD}credential_env: { TOKEN: FILES_MCP_TOKEN }\n`)).toEqual([
      expect.stringMatching(
        /^files\.yaml:\d+:1: credential_env: is for a stdio server \(command\); this one has url$/,
      ),
    ]);
    expect(problems(GOOD.replace("op_group: write", "op_group: writes"))).toEqual([
      expect.stringContaining("tools[1].op_group: op_group 'writes' is not in op_groups (read, write)"),
    ]);
    expect(problems(GOOD.replace("url: http", "urls: http"))).toEqual(
      expect.arrayContaining([expect.stringContaining("urls")]),
    );
    expect(problems(GOOD.replace("name: read_file", "name: read file"))).toEqual([
      expect.stringContaining("tools[0].name: must be the upstream tool's name"),
    ]);
    expect(problems(GOOD.replace("name: write-file.v2", "name: read_file"))).toEqual([
      expect.stringContaining("tool 'read_file' is listed twice"),
    ]);
  });

  describe("loading with the providers", () => {
    let dir: string | undefined;
    afterEach(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test("a server named like a provider, or whose tool name another already has, is refused; the rest load", async () => {
      dir = await mkdtemp(join(tmpdir(), "butler-mcp-spec-"));
      const providers = join(dir, "providers");
      const servers = join(dir, "mcp_servers");
      await mkdir(providers);
      await mkdir(servers);
      const stripe = await readFile(new URL("../../providers/stripe.yaml", import.meta.url), "utf8");
      await writeFile(join(providers, "stripe.yaml"), stripe);
      // A provider whose name holds _: its tools could be another's <server>_<tool>.
      await writeFile(
        join(providers, "str_ipe.yaml"),
        stripe.replace(/^name: stripe$/m, "name: str_ipe\nservice: stripe"),
      );
      await writeFile(join(servers, "files.yaml"), GOOD);
      await writeFile(join(servers, "stripe.yaml"), GOOD.replace("name: files", "name: stripe"));
      // Its tool str_ipe_list_charges would be the same MCP tool name as str_ipe's list_charges.
      await writeFile(
        join(servers, "str.yaml"),
        GOOD.replace("name: files", "name: str").replace("name: read_file", "name: ipe_list_charges"),
      );
      const set = await loadProviders(providers, servers);
      expect([...set.providers.keys()].sort()).toEqual(["files", "str_ipe", "stripe"]);
      expect(set.providers.get("stripe")!.mcp).toBeUndefined();
      const messages = set.failures.flatMap((f) =>
        f.issues.map((i) => `${f.file.split("/").pop()}: ${i.message}`),
      );
      expect(messages).toEqual([
        "str.yaml: its MCP tool would be str_ipe_list_charges, which is already provider str_ipe's operation list_charges; rename one",
        "stripe.yaml: MCP server 'stripe': a provider or MCP server of that name is already loaded",
      ]);
    });
  });
});

describe("upstream tool definitions", () => {
  test("cleaned of control, zero-width and bidi characters, cut with a mark; the hash follows every part", () => {
    expect(cleanText("a\u202eb\u200bc\u0007d\ne\tf\u2066", 100)).toBe("abcd\ne\tf");
    expect(cleanText("x".repeat(50), 10)).toBe(`${"x".repeat(9)}…`);
    expect(cleanText(42, 10)).toBe("");
    const d = definitionOf({
      title: "Read",
      description: "Reads.",
      inputSchema: { type: "object", properties: {} },
    });
    expect(hashOf(d)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashOf({ ...d, description: "Reads!" })).not.toBe(hashOf(d));
    expect(hashOf({ ...d, title: "Read it" })).not.toBe(hashOf(d));
    expect(hashOf({ ...d, inputSchema: { type: "object", properties: { a: { type: "string" } } } })).not.toBe(
      hashOf(d),
    );
    // A schema too large to keep is replaced by a plain object schema (and so hashes as that).
    const huge = { type: "object", properties: { a: { type: "string", description: "y".repeat(40_000) } } };
    expect(definitionOf({ description: "x", inputSchema: huge }).inputSchema).toEqual({ type: "object" });
  });
});
