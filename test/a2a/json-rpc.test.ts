import { describe, expect, test } from "vitest";
import { JSONRPC_CODES, parseCall } from "../../src/a2a/json-rpc.js";
import { unstorableAt } from "../../src/http/validation.js";

/** Pure: what the A2A endpoint answers before a call reaches the SDK. No database, no server. */

const JSON_TYPE = "application/json";
const getTask = (params: unknown, id: unknown = 1) =>
  JSON.stringify({ jsonrpc: "2.0", id, method: "GetTask", params });

describe("parseCall", () => {
  test.each<[string, string | undefined, string, number, unknown, RegExp]>([
    [
      "no content type",
      undefined,
      getTask({ id: "t" }),
      JSONRPC_CODES.CONTENT_TYPE_NOT_SUPPORTED,
      null,
      /none; send application\/json/,
    ],
    [
      "text/plain",
      "text/plain",
      getTask({ id: "t" }),
      JSONRPC_CODES.CONTENT_TYPE_NOT_SUPPORTED,
      null,
      /"text\/plain"/,
    ],
    ["not JSON", JSON_TYPE, "{", JSONRPC_CODES.PARSE_ERROR, null, /^Parse error: /],
    [
      "a batch",
      JSON_TYPE,
      `[${getTask({})}]`,
      JSONRPC_CODES.INVALID_REQUEST,
      null,
      /batches are not supported/,
    ],
    [
      "no jsonrpc",
      JSON_TYPE,
      JSON.stringify({ id: 4, method: "GetTask" }),
      JSONRPC_CODES.INVALID_REQUEST,
      4,
      /^Invalid Request: send/,
    ],
    [
      "a method that is no string",
      JSON_TYPE,
      JSON.stringify({ jsonrpc: "2.0", id: "a", method: 1 }),
      JSONRPC_CODES.INVALID_REQUEST,
      "a",
      /^Invalid Request/,
    ],
    [
      "an id that is an object",
      JSON_TYPE,
      getTask({ id: "t" }, { x: 1 }),
      JSONRPC_CODES.INVALID_REQUEST,
      null,
      /^Invalid Request/,
    ],
    [
      "a fractional id",
      JSON_TYPE,
      getTask({ id: "t" }, 1.5),
      JSONRPC_CODES.INVALID_REQUEST,
      null,
      /^Invalid Request/,
    ],
    [
      "params that are a list",
      JSON_TYPE,
      getTask([]),
      JSONRPC_CODES.INVALID_PARAMS,
      1,
      /params must be a JSON object/,
    ],
    [
      "a NUL in params",
      JSON_TYPE,
      getTask({ id: "t\u0000" }),
      JSONRPC_CODES.INVALID_PARAMS,
      1,
      /params\.id must be text without NUL/,
    ],
    [
      "params of the wrong shape",
      JSON_TYPE,
      JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "SendMessage",
        params: { message: { parts: [{ raw: 5 }] } },
      }),
      JSONRPC_CODES.INVALID_PARAMS,
      1,
      /do not have the shape of SendMessage's request/,
    ],
  ])("%s is answered with its JSON-RPC error", (_, type, body, code, id, message) => {
    const r = parseCall(type, body);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.error.code).toBe(code);
    expect(r.error.error.message).toMatch(message);
    expect(r.error.id ?? null).toEqual(id);
  });

  test.each([
    ["application/json", getTask({ id: "t" })],
    ["application/a2a+json; charset=utf-8", getTask({ id: "t" })],
    ["Application/JSON", JSON.stringify({ jsonrpc: "2.0", method: "NoSuchMethod", params: 5 })],
  ])("%s: a call is passed on with its id, method and body", (type, body) => {
    const r = parseCall(type, body);
    expect(r).toEqual({
      ok: true,
      value: { id: JSON.parse(body).id, method: JSON.parse(body).method, body: JSON.parse(body) },
    });
  });
});

describe("unstorableAt", () => {
  test.each<[string, unknown, string | undefined]>([
    ["plain text", { a: "b", c: [1, "d"] }, undefined],
    ["a NUL in a value", { message: { parts: [{ text: "a\u0000" }] } }, "params.message.parts[0].text"],
    ["an unpaired surrogate", { id: "\ud800" }, "params.id"],
    ["a NUL in a key", { "k\u0000": 1 }, "params[a key]"],
    ["a key that is no name", { "a b": "\u0000" }, "params[a key]"],
  ])("%s", (_, params, at) => {
    expect(unstorableAt(params)).toBe(at);
  });
});
