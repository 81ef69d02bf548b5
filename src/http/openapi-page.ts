/**
 * The HTTP API's reference page (`/docs`): the OpenAPI document rendered as one HTML page on the
 * server, with no script, no style and nothing fetched, so that it works offline and under the
 * dashboard's strict Content-Security-Policy. Every value taken from the document is escaped.
 */

import { escapeHtml } from "./escape-html.js";

const esc = (s: unknown) => escapeHtml(String(s));

// biome-ignore lint/suspicious/noExplicitAny: the document is JSON made by openApiDocument; every read is rendered escaped
type Json = Record<string, any>;

function anchor(method: string, path: string): string {
  return `${method}-${path}`.replace(/[^A-Za-z0-9]+/g, "-");
}

function security(op: Json, schemes: Json): string {
  const req = (op.security ?? []) as Json[];
  if (req.length === 0) return "none (public)";
  return req
    .map((r) => Object.keys(r)[0]!)
    .map((name) => `<abbr title="${esc(schemes[name]?.description ?? "")}">${esc(name)}</abbr>`)
    .join(" or ");
}

function parameterRows(op: Json): string {
  const ps = (op.parameters ?? []) as Json[];
  if (ps.length === 0) return "";
  const rows = ps
    .map(
      (p) =>
        `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required ? "yes" : "no"}</td><td>${esc(p.description ?? "")}</td><td><code>${esc(JSON.stringify(p.schema ?? {}))}</code></td></tr>`,
    )
    .join("");
  return `<table><thead><tr><th>Parameter</th><th>In</th><th>Required</th><th>About</th><th>Schema</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function body(op: Json): string {
  const b = op.requestBody as Json | undefined;
  if (!b) return "";
  const content = Object.entries((b.content ?? {}) as Json)
    .map(
      ([type, c]) =>
        `<p>${esc(type)}${b.required ? "" : " (optional)"}</p><pre>${esc(JSON.stringify((c as Json).schema ?? {}, null, 2))}</pre>`,
    )
    .join("");
  return `<h4>Body</h4>${b.description ? `<p>${esc(b.description)}</p>` : ""}${content}`;
}

function answers(op: Json): string {
  const items = Object.entries((op.responses ?? {}) as Json)
    .map(([status, r]) => {
      const desc = (r as Json).$ref ? "an error, see Errors" : (r as Json).description;
      return `<li><code>${esc(status)}</code> ${esc(desc)}</li>`;
    })
    .join("");
  return `<h4>Answers</h4><ul>${items}</ul>`;
}

/** The page of an OpenAPI document (as `openApiDocument` makes it). */
export function openApiPage(doc: Json): string {
  const schemes = (doc.components?.securitySchemes ?? {}) as Json;
  const byTag = new Map<string, string[]>();
  const toc = new Map<string, string[]>();
  for (const [path, item] of Object.entries((doc.paths ?? {}) as Json)) {
    for (const [method, op] of Object.entries(item as Json) as [string, Json][]) {
      const tag = String(op.tags?.[0] ?? "other");
      const id = anchor(method, path);
      const title = `${method.toUpperCase()} ${path}`;
      toc.set(tag, [
        ...(toc.get(tag) ?? []),
        `<li><a href="#${esc(id)}"><code>${esc(title)}</code></a> ${esc(op.summary ?? "")}</li>`,
      ]);
      byTag.set(tag, [
        ...(byTag.get(tag) ?? []),
        `<section id="${esc(id)}"><h3><code>${esc(title)}</code></h3><p>${esc(op.summary ?? "")}</p>${
          op.description ? `<p>${esc(op.description)}</p>` : ""
        }<p>Credentials: ${security(op, schemes)}</p>${parameterRows(op)}${body(op)}${answers(op)}</section>`,
      ]);
    }
  }
  const tags = [...byTag.keys()].sort();
  const schemeList = Object.entries(schemes)
    .map(([name, s]) => `<li><code>${esc(name)}</code>: ${esc((s as Json).description ?? "")}</li>`)
    .join("");
  const errors = doc.components?.responses?.Error as Json | undefined;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info?.title)} HTTP API</title></head><body>
<header><h1>${esc(doc.info?.title)} HTTP API <small>${esc(doc.info?.version)}</small></h1>
<p>${esc(doc.info?.description ?? "")}</p>
<p>The same description as an OpenAPI ${esc(doc.openapi)} document: <a href="/openapi.json">/openapi.json</a>.</p></header>
<nav><h2>Contents</h2>${tags.map((t) => `<h3>${esc(t)}</h3><ul>${(toc.get(t) ?? []).join("")}</ul>`).join("")}
<p><a href="#credentials">Credentials</a> · <a href="#errors">Errors</a></p></nav>
<main>${tags.map((t) => `<h2>${esc(t)}</h2>${(byTag.get(t) ?? []).join("\n")}`).join("\n")}
<h2 id="credentials">Credentials</h2><ul>${schemeList}</ul>
<h2 id="errors">Errors</h2><p>${esc(errors?.description ?? "")}</p>
<pre>${esc(JSON.stringify(doc.components?.schemas?.Error ?? {}, null, 2))}</pre></main>
</body></html>
`;
}
