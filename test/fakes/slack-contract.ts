/**
 * What Slack's Web API refuses in chat.postMessage / chat.update, as far as cards go: more than 50
 * blocks, section text over 3000 characters, more than 10 fields or a field over 2000, a header
 * over 150, a button value over 2000, button text over 75. Returns Slack's error code, or undefined.
 */
export function slackMessageError(args: { text?: unknown; blocks?: unknown }): string | undefined {
  if (args.blocks === undefined)
    return typeof args.text === "string" && args.text.length > 0 ? undefined : "no_text";
  let blocks: unknown;
  try {
    blocks = typeof args.blocks === "string" ? JSON.parse(args.blocks) : args.blocks;
  } catch {
    return "invalid_blocks_format";
  }
  if (!Array.isArray(blocks)) return "invalid_blocks_format";
  if (blocks.length > 50) return "invalid_blocks";
  for (const b of blocks as Record<string, any>[]) {
    switch (b.type) {
      case "header":
        if (b.text?.type !== "plain_text" || b.text.text.length > 150) return "invalid_blocks";
        break;
      case "section":
        if (b.text && (typeof b.text.text !== "string" || b.text.text.length > 3000)) return "invalid_blocks";
        if (b.fields && (b.fields.length > 10 || b.fields.some((f: any) => f.text.length > 2000)))
          return "invalid_blocks";
        if (!b.text && !b.fields) return "invalid_blocks";
        break;
      case "actions":
        if (!Array.isArray(b.elements) || b.elements.length > 25) return "invalid_blocks";
        for (const e of b.elements) {
          if (e.type === "button" && (String(e.value ?? "").length > 2000 || e.text?.text?.length > 75))
            return "invalid_blocks";
        }
        break;
      case "context":
        if (!Array.isArray(b.elements) || b.elements.length > 10) return "invalid_blocks";
        break;
      default:
        return "invalid_blocks";
    }
  }
  return undefined;
}
