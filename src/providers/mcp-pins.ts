import { and, eq } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import { canonicalJson } from "../audit/chain.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { mcpToolPins } from "../db/schema.js";
import { AppError } from "../errors.js";
import { sha256 } from "../hash.js";

/**
 * Pinned definitions of upstream MCP tools (see the table's comment in db/schema.ts). A definition
 * is what an agent's model reads and what the tool does: its title, description and input schema,
 * cleaned of what a renderer or a model could mistake for something else, and size-limited.
 */

/** An upstream tool's definition as Butler keeps and shows it. */
export interface ToolDefinition {
  title: string | undefined;
  description: string;
  inputSchema: Record<string, unknown>;
}

export interface Pin {
  pinnedHash: string;
  pinned: ToolDefinition;
  pinnedBy: string;
  pinnedAt: Date;
  changedHash: string | undefined;
  changed: ToolDefinition | undefined;
  changedAt: Date | undefined;
}

/** The longest description kept (characters); longer ones are cut, with a mark. */
export const MAX_DESCRIPTION = 2000;
/** The largest input schema kept (bytes of JSON); a larger one is replaced by a plain object schema. */
export const MAX_SCHEMA_BYTES = 32 * 1024;

/**
 * Upstream text made safe to keep and show: well-formed, without control characters (but for
 * newlines and tabs) and invisible format characters that could hide instructions (zero-width,
 * bidi overrides), at most `max` characters. It is still untrusted text, never markup.
 */
export function cleanText(s: unknown, max: number): string {
  if (typeof s !== "string") return "";
  const cleaned = s.toWellFormed().replace(HIDDEN, (ch) => (ch === "\n" || ch === "\t" ? ch : ""));
  return cleaned.length > max ? `${cleaned.slice(0, max - 1)}…` : cleaned;
}

/**
 * Characters a reader does not see but a model reads: controls, format characters (zero-width,
 * bidi overrides and isolates, the soft hyphen, Unicode tags that can spell out hidden text) and
 * every other default-ignorable code point (variation selectors among them).
 */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/gu;

/** Every string of a JSON value (keys too) cleaned of hidden characters. */
function cleanDeep(v: unknown): unknown {
  if (typeof v === "string") return cleanText(v, MAX_SCHEMA_BYTES);
  if (Array.isArray(v)) return v.map(cleanDeep);
  if (v !== null && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [cleanText(k, 256), cleanDeep(x)]));
  return v;
}

/** An upstream tool (as tools/list gave it) as Butler keeps it. */
export function definitionOf(tool: {
  title?: unknown;
  description?: unknown;
  inputSchema?: unknown;
}): ToolDefinition {
  const title = tool.title === undefined ? undefined : cleanText(tool.title, 200);
  let inputSchema: Record<string, unknown> = { type: "object" };
  if (tool.inputSchema && typeof tool.inputSchema === "object" && !Array.isArray(tool.inputSchema)) {
    const json = JSON.stringify(tool.inputSchema);
    if (json.length <= MAX_SCHEMA_BYTES && !json.includes("\\u0000"))
      inputSchema = cleanDeep(JSON.parse(json)) as Record<string, unknown>;
  }
  return { title, description: cleanText(tool.description, MAX_DESCRIPTION), inputSchema };
}

/**
 * The hash of a tool as the upstream sent it (all of it but `_meta`): any change counts, also in
 * parts Butler cuts, cleans or does not show (past 2,000 characters, hidden characters, the output
 * schema, annotations).
 */
export function hashOf(tool: object): string {
  const { _meta: _, ...rest } = tool as Record<string, unknown>;
  return sha256(canonicalJson(rest));
}

type Row = typeof mcpToolPins.$inferSelect;

function pinOf(r: Row): Pin {
  return {
    pinnedHash: r.pinnedHash,
    pinned: r.pinned as unknown as ToolDefinition,
    pinnedBy: r.pinnedBy,
    pinnedAt: r.pinnedAt,
    changedHash: r.changedHash ?? undefined,
    changed: (r.changed ?? undefined) as ToolDefinition | undefined,
    changedAt: r.changedAt ?? undefined,
  };
}

export function createMcpPins(deps: { db: Db; audit: Pick<AuditLog, "appendInTx">; clock: Clock }) {
  const { db, audit, clock } = deps;
  const where = (server: string, tool: string) =>
    and(eq(mcpToolPins.server, server), eq(mcpToolPins.tool, tool));
  return {
    async get(server: string, tool: string): Promise<Pin | undefined> {
      const [r] = await db.select().from(mcpToolPins).where(where(server, tool));
      return r ? pinOf(r) : undefined;
    },

    async list(server?: string): Promise<({ server: string; tool: string } & Pin)[]> {
      const rows = await db
        .select()
        .from(mcpToolPins)
        .where(server === undefined ? undefined : eq(mcpToolPins.server, server))
        .orderBy(mcpToolPins.server, mcpToolPins.tool);
      return rows.map((r) => ({ server: r.server, tool: r.tool, ...pinOf(r) }));
    },

    /**
     * Records what an instance saw upstream, once across instances: a tool seen for the first time
     * is pinned (`mcp.tool_pinned`); a definition other than the pinned one, not recorded yet, is
     * recorded as changed (`mcp.tool_changed`, with both hashes and both descriptions). The pin as
     * it stands afterwards.
     */
    async observe(server: string, tool: string, seen: ToolDefinition, hash: string): Promise<Pin> {
      const now = clock.now();
      return db.transaction(async (tx) => {
        const [fresh] = await tx
          .insert(mcpToolPins)
          .values({
            server,
            tool,
            pinnedHash: hash,
            pinned: seen as unknown as Record<string, unknown>,
            pinnedAt: now,
            pinnedBy: "first-seen",
          })
          .onConflictDoNothing()
          .returning();
        if (fresh) {
          await audit.appendInTx(tx, [
            {
              type: "mcp.tool_pinned",
              at: now,
              action: `mcp:${server}:${tool}`,
              details: { server, tool, pinned_hash: hash, pinned_by: "first-seen" },
            },
          ]);
          return pinOf(fresh);
        }
        const [row] = await tx.select().from(mcpToolPins).where(where(server, tool)).for("update");
        const pin = pinOf(row!);
        if (pin.pinnedHash === hash || pin.changedHash === hash) return pin;
        // Each definition is audited once: an upstream flipping between two does not fill the log.
        const audited = row!.changedSeen;
        const [updated] = await tx
          .update(mcpToolPins)
          .set({
            changedHash: hash,
            changed: seen as unknown as Record<string, unknown>,
            changedAt: now,
            changedSeen: audited.includes(hash) ? audited : [...audited, hash].slice(-100),
          })
          .where(where(server, tool))
          .returning();
        if (audited.includes(hash)) return pinOf(updated!);
        await audit.appendInTx(tx, [
          {
            type: "mcp.tool_changed",
            at: now,
            action: `mcp:${server}:${tool}`,
            reason:
              "the upstream changed the tool's definition since it was approved; calls are refused until a person approves the new one",
            details: {
              server,
              tool,
              pinned_hash: pin.pinnedHash,
              new_hash: hash,
              description_before: pin.pinned.description.slice(0, 500),
              description_after: seen.description.slice(0, 500),
              title_before: pin.pinned.title ?? null,
              title_after: seen.title ?? null,
              schema_changed: canonicalJson(pin.pinned.inputSchema) !== canonicalJson(seen.inputSchema),
            },
          },
        ]);
        return pinOf(updated!);
      });
    },

    /**
     * A person approves the changed definition with this hash (the one they reviewed; a newer
     * change is not approved by it): it becomes the pinned one (`mcp.tool_approved`).
     */
    async approve(server: string, tool: string, hash: string, approver: string): Promise<Pin> {
      const now = clock.now();
      return db.transaction(async (tx) => {
        const [row] = await tx.select().from(mcpToolPins).where(where(server, tool)).for("update");
        if (!row) throw new AppError("NOT_FOUND", `no pinned MCP tool ${server} ${tool}`);
        if (row.changedHash !== hash || !row.changed)
          throw new AppError(
            "CONFLICT",
            row.changedHash
              ? `the changed definition of ${server} ${tool} has hash ${row.changedHash}, not ${hash}: review that one`
              : `${server} ${tool} has no changed definition waiting for approval`,
          );
        const [updated] = await tx
          .update(mcpToolPins)
          .set({
            pinnedHash: hash,
            pinned: row.changed,
            pinnedAt: now,
            pinnedBy: approver,
            changedHash: null,
            changed: null,
            changedAt: null,
            changedSeen: [],
          })
          .where(where(server, tool))
          .returning();
        await audit.appendInTx(tx, [
          {
            type: "mcp.tool_approved",
            at: now,
            action: `mcp:${server}:${tool}`,
            details: {
              server,
              tool,
              pinned_hash: hash,
              previous_hash: row.pinnedHash,
              approved_by: approver,
            },
          },
        ]);
        return pinOf(updated!);
      });
    },
  };
}

export type McpPins = ReturnType<typeof createMcpPins>;
