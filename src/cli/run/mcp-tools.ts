import type { McpToolInfo } from "../../admin/admin-service.js";
import { type Parsed, print } from "../command.js";
import { type CliIo, termSafe } from "../output.js";
import { withAdmin } from "../with-admin.js";

/** One pinned tool as text: the upstream's words shown as plain text (termSafe), never interpreted. */
function describe(t: McpToolInfo): string {
  const lines = [
    `${t.server} ${termSafe(t.tool)}  pinned ${t.pinned_hash} by ${termSafe(t.pinned_by)} at ${t.pinned_at}`,
    `  description: ${termSafe(t.pinned.description)}`,
  ];
  if (t.changed)
    lines.push(
      `  CHANGED at ${t.changed.seen_at}, calls refused until approved: hash ${t.changed.hash}`,
      `  new description: ${termSafe(t.changed.definition.description)}`,
      `  new input schema: ${termSafe(JSON.stringify(t.changed.definition.inputSchema))}`,
      `  approve with: butler mcp approve ${t.server} ${termSafe(t.tool)} ${t.changed.hash}`,
    );
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
