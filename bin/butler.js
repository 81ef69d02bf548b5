#!/usr/bin/env node
// The `butler` command: runs the compiled CLI (built by `npm install` through the `prepare` script).
import { main } from "../dist/cli/index.js";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`butler: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
