import type { RouteDoc } from "../http/route-doc.js";

/**
 * The dashboard's routes as `/openapi.json` lists them, minimally: they are pages and the
 * requests its own script makes, for people with a browser, not an API to build on.
 */
export function dashboardDoc(
  summary: string,
  o: { public?: true; type?: string; form?: true } = {},
): { config: { doc: RouteDoc } } {
  return {
    config: {
      doc: {
        tag: "dashboard",
        summary,
        auth: o.public ? [] : ["session"],
        ...(o.form
          ? { rawBody: { types: ["application/x-www-form-urlencoded"], description: "The page's form" } }
          : {}),
        responses: { 200: { description: "OK", type: o.type ?? "text/html" } },
      },
    },
  };
}
