/** The pure policy core: parse, compile and evaluate. No I/O, no database, no HTTP. */
export * from "./command.js";
export * from "./compile.js";
export * from "./evaluate.js";
export * from "./glob.js";
export * from "./parameters.js";
export * from "./parse.js";
export * from "./time.js";
export * from "./types.js";
