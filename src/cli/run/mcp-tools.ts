import type { McpToolInfo } from "../../admin/admin-service.js";
import { type Parsed, print } from "../command.js";
import { type CliIo, termSafe } from "../output.js";
import { withAdmin } from "../with-admin.js";

/** One pinned tool as text: the upstream's words shown as plain text (termSafe), never interpreted. */
function describe(t: McpToolInfo): string {
  const schema = (d: McpToolInfo["pinned"]) => termSafe(JSON.stringify(d.inputSchema));
  const lines = [
    `${t.server} ${termSafe(t.tool)}  pinned ${t.pinned_hash} by ${termSafe(t.pinned_by)} at ${t.pinned_at}`,
    `  title: ${termSafe(t.pinned.title ?? "(none)")}`,
    `  description: ${termSafe(t.pinned.description)}`,
    `  input schema: ${schema(t.pinned)}`,
  ];
  if (t.changed) {
    const d = t.changed.definition;
    const parts = [
      d.title !== t.pinned.title && "title",
      d.description !== t.pinned.description && "description",
      JSON.stringify(d.inputSchema) !== JSON.stringify(t.pinned.inputSchema) && "input schema",
    ].filter(Boolean);
    lines.push(
      `  CHANGED at ${t.changed.seen_at} (${parts.length ? parts.join(", ") : "only in parts not shown: hidden characters, text past the limits, output schema or annotations"}); calls are refused until approved: hash ${t.changed.hash}`,
      `  new title: ${termSafe(d.title ?? "(none)")}`,
      `  new description: ${termSafe(d.description)}`,
      `  new input schema: ${schema(d)}`,
      `  approve with: butler mcp approve ${t.server} ${termSafe(t.tool)} ${t.changed.hash}`,
    );
  }
  return lines.join("\n");
}

export async function mcpTools({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const list = await withAdmin(io, (ops) => ops.listMcpTools(positionals[0]));
  const text = list.length === 0 ? "no MCP tool has been seen yet" : list.map(describe).join("\n");
  print(io, { tools: list }, text, !!values.json);
  return 0;
}

export async function mcpApprove({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const [server, tool, hash] = positionals as [string, string, string];
  const r = await withAdmin(io, (ops) => ops.approveMcpTool(server, tool, hash));
  print(
    io,
    r,
    `Approved: ${r.server} ${termSafe(r.tool)} is pinned at ${r.pinned_hash} and may be called again`,
    !!values.json,
  );
  return 0;
}
