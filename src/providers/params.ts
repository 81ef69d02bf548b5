/**
 * Call parameters on the wire: Stripe-style form encoding (`metadata[order]=42`, `expand[0]=x`)
 * both ways, and reading dotted paths. Pure.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Flattens params into form/query pairs with bracket notation, as Stripe expects. */
export function formPairs(params: Record<string, unknown>, prefix = ""): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(params)) {
    const key = prefix ? `${prefix}[${k}]` : k;
    if (v === undefined) continue;
    if (v === null) out.push([key, ""]);
    else if (Array.isArray(v)) {
      v.forEach((item, i) => {
        if (item !== null && typeof item === "object")
          out.push(...formPairs(item as Record<string, unknown>, `${key}[${i}]`));
        else out.push([`${key}[${i}]`, item === null || item === undefined ? "" : String(item)]);
      });
    } else if (typeof v === "object") out.push(...formPairs(v as Record<string, unknown>, key));
    else out.push([key, String(v)]);
  }
  return out;
}

export function formEncode(params: Record<string, unknown>): string {
  return formPairs(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join("&");
}

const MAX_DEPTH = 16;

/**
 * Rebuilds nested params from form/query pairs (`a[b][c]=1`, `list[]=x`, `list[0]=x`). Numbers
 * stay strings, as on the wire; the policy's constraints read numeric strings as numbers.
 * Returns an error for keys that would nest too deep or mix a value with an object.
 */
export function nestPairs(
  pairs: Iterable<[string, string]>,
): { ok: true; value: Record<string, Json> } | { ok: false; error: string } {
  const root: Record<string, Json> = {};
  for (const [rawKey, value] of pairs) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(rawKey);
    if (!m)
      return { ok: false, error: `parameter name ${JSON.stringify(rawKey.slice(0, 100))} is not valid` };
    const path = [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
    if (path.length > MAX_DEPTH)
      return { ok: false, error: `parameter ${rawKey.slice(0, 100)} is nested too deep` };
    let node: Record<string, Json> | Json[] = root;
    for (let i = 0; i < path.length; i++) {
      const last = i === path.length - 1;
      let k: string | number = path[i]!;
      if (Array.isArray(node)) k = k === "" ? node.length : Number(k);
      else if (k === "")
        return { ok: false, error: `parameter ${rawKey.slice(0, 100)} uses [] on an object` };
      if (typeof k === "number" && (!Number.isInteger(k) || k < 0 || k > 10_000))
        return { ok: false, error: `parameter ${rawKey.slice(0, 100)} has a bad list index` };
      if (typeof k === "string" && (k === "__proto__" || k === "constructor" || k === "prototype"))
        return { ok: false, error: `parameter name ${k} is not allowed` };
      const container = node as Record<string | number, Json>;
      if (last) {
        if (container[k] !== undefined && typeof container[k] === "object")
          return { ok: false, error: `parameter ${rawKey.slice(0, 100)} is both a value and an object` };
        container[k] = value;
      } else {
        const next = path[i + 1]!;
        const wantArray = next === "" || /^\d+$/.test(next);
        if (container[k] === undefined) container[k] = wantArray ? [] : {};
        const child = container[k];
        if (child === null || typeof child !== "object")
          return { ok: false, error: `parameter ${rawKey.slice(0, 100)} is both a value and an object` };
        node = child as Record<string, Json> | Json[];
      }
    }
  }
  return { ok: true, value: root };
}

/** The value at a dotted path (`receiver.account_id`), or undefined. */
export function valueAtPath(params: Record<string, unknown>, path: string): unknown {
  let v: unknown = params;
  for (const k of path.split(".")) {
    if (v === null || typeof v !== "object" || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}
