import pino from "pino";
import { createSecrets, type Secrets } from "./secrets.js";

export type Logger = pino.Logger;
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/**
 * The one logger: pino (what fastify uses), JSON lines on stderr so that stdout stays free for
 * command output. Authorization headers and token fields are redacted wherever they appear, and
 * every finished line (message, error messages and stacks, nested fields, child bindings) goes
 * through `secrets.redact` before it is written: no configured secret and no URL credential
 * reaches the log, whatever library error carried it.
 */
export function createLogger(
  level: LogLevel,
  destination: pino.DestinationStream = pino.destination(2),
  secrets: Pick<Secrets, "redact"> = createSecrets(),
): Logger {
  return pino(
    {
      level,
      redact: {
        paths: ["req.headers.authorization", "headers.authorization", "token", "*.token", "adminToken"],
        censor: "[redacted]",
      },
      hooks: { streamWrite: (line) => secrets.redact(line) },
    },
    destination,
  );
}
