/**
 * Telegram's HTML parse mode, strictly: only these tags, properly nested, `&` only in the four
 * entities, and at most 4096 characters once parsed. Returns Telegram's error description, or undefined.
 */
const ALLOWED = new Set(["b", "strong", "i", "em", "u", "s", "code", "pre", "a", "blockquote", "tg-spoiler"]);

export function telegramHtmlError(html: string): string | undefined {
  const stack: string[] = [];
  let visible = 0;
  const re = /<(\/?)([a-z-]+)((?:\s+[a-z-]+="[^"<>]*")*)\s*>|&(amp|lt|gt|quot);|([<>&])|([\s\S])/gy;
  let m: RegExpExecArray | null;
  for (m = re.exec(html); m; m = re.exec(html)) {
    if (m[2]) {
      if (!ALLOWED.has(m[2])) return `Bad Request: can't parse entities: unsupported start tag "${m[2]}"`;
      if (m[1]) {
        if (stack.pop() !== m[2]) return `Bad Request: can't parse entities: unmatched end tag "${m[2]}"`;
      } else stack.push(m[2]);
    } else if (m[4]) visible++;
    else if (m[5]) return `Bad Request: can't parse entities: unexpected "${m[5]}"`;
    else visible++;
  }
  if (stack.length) return `Bad Request: can't parse entities: unclosed tag "${stack.at(-1)}"`;
  if (visible > 4096) return "Bad Request: message is too long";
  return undefined;
}

/** The text a person sees: tags removed, entities decoded. */
export function telegramVisibleText(html: string): string {
  return html
    .replace(/<[^>]+>/g, "")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&");
}
