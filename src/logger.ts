import pino from "pino";

export type Logger = pino.Logger;
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/**
 * The one logger: pino (what fastify uses), JSON lines on stderr so that stdout stays free for
 * command output. Authorization headers and token fields are redacted wherever they appear.
 */
export function createLogger(
  level: LogLevel,
  destination: pino.DestinationStream = pino.destination(2),
): Logger {
  return pino(
    {
      level,
      redact: {
        paths: ["req.headers.authorization", "headers.authorization", "token", "*.token", "adminToken"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
