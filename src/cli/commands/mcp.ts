import type { Command } from "../command.js";

const tools = () => import("../run/mcp-tools.js");

/** MCP: the stdio bridge to a running server's `/mcp`; the tools of the MCP servers behind Butler. */
export const mcpCommands: Command[] = [
  {
    name: "mcp stdio",
    usage: "--url URL [--token-env VAR]",
    summary:
      "bridge an MCP client that launches a process (stdio) to a Butler server's /mcp endpoint, as one agent",
    options: {
      url: {
        type: "string",
        value: "URL",
        help: "the Butler server (http://host:port; /mcp is added) or its MCP endpoint",
      },
      "token-env": {
        type: "string",
        value: "VAR",
        help: "the environment variable holding the agent's Butler token (default BUTLER_TOKEN)",
      },
    },
    positionals: [0, 0],
    example: "butler mcp stdio --url http://127.0.0.1:8080 --token-env BUTLER_TOKEN",
    run: async (a, io) => (await import("../run/mcp.js")).mcpStdio(a, io),
  },
  {
    name: "mcp tools",
    usage: "[server]",
    summary:
      "the pinned tool definitions of the MCP servers behind Butler (mcp_servers/), and changed ones waiting for approval",
    positionals: [0, 1],
    example: "butler mcp tools files",
    admin: true,
    run: async (a, io) => (await tools()).mcpTools(a, io),
  },
  {
    name: "mcp approve",
    usage: "<server> <tool> <hash>",
    summary:
      "approve a changed MCP tool definition after reviewing it (mcp tools shows it and its hash): it is pinned and callable again",
    positionals: [3, 3],
    example: "butler mcp approve files read_file 3f5a…",
    admin: true,
    run: async (a, io) => (await tools()).mcpApprove(a, io),
  },
];
