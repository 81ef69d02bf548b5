import type { Command } from "../command.js";

/** MCP: the stdio bridge to a running server's `/mcp`. */
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
];
