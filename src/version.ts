import { readFileSync } from "node:fs";

/** This package's version, from package.json (the same path from src/ and from dist/). */
export const PACKAGE_VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
