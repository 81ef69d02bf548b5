import type { Command } from "../command.js";

const impl = () => import("../run/credentials.js");

/** Provider credentials, stored encrypted. */
export const credentialCommands: Command[] = [
  {
    name: "credentials set",
    usage: "<NAME>",
    summary: "store a provider credential, read from standard input, encrypted",
    positionals: [1, 1],
    example: 'printf %s "$KEY" | butler credentials set STRIPE_API_KEY',
    admin: true,
    run: async (a, io) => (await impl()).credentialsSet(a, io),
  },
  {
    name: "credentials list",
    usage: "",
    summary: "stored credentials: names and dates, never values",
    positionals: [0, 0],
    example: "butler credentials list",
    admin: true,
    run: async (a, io) => (await impl()).credentialsList(a, io),
  },
  {
    name: "credentials delete",
    usage: "<NAME>",
    summary: "remove a stored credential",
    positionals: [1, 1],
    example: "butler credentials delete STRIPE_API_KEY",
    admin: true,
    run: async (a, io) => (await impl()).credentialsDelete(a, io),
  },
];
