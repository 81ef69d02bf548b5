import type { ServerResponse } from "node:http";
import type { AgentIdentity, TokenService } from "../agents/token-service.js";
import type { Change } from "../db/changes.js";
import type { Logger } from "../logger.js";

/**
 * The MCP server streams open on this instance (`GET /mcp` with a session): the only thing Butler
 * sends on them is `notifications/tools/list_changed`, when what an agent may call may have
 * changed: a new revision of its project's policy (a grant approved, expired or revoked, a file
 * reloaded), on whichever instance it happened (the change bus tells every instance). A stream
 * whose token is revoked is ended; every stream ends when the server stops.
 */
interface OpenStream {
  identity: AgentIdentity;
  /** The bearer token the stream was opened with, checked again when tokens change. */
  token: string;
  /** The MCP session the stream belongs to (its id's hash). */
  session: string;
  res: ServerResponse;
  keepAlive: NodeJS.Timeout;
}

const LIST_CHANGED = `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/tools/list_changed" })}\n\n`;

export function createMcpStreams(deps: {
  tokens: Pick<TokenService, "authenticate">;
  log: Logger;
  /** How often an idle stream gets an SSE comment, so that proxies keep it open. */
  keepAliveMs?: number;
  /**
   * Whether the session is still live (not ended through another instance, not expired): asked
   * at every keep-alive, and a stream whose session is not is ended.
   */
  sessionLive?: (session: string) => Promise<boolean>;
}) {
  const streams = new Set<OpenStream>();
  let opened: (() => void)[] = [];
  /** Checks under way (tokens, sessions), so that a caller can wait for them (settled). */
  const checks = new Set<Promise<void>>();
  const end = (s: OpenStream) => {
    if (!streams.delete(s)) return;
    clearInterval(s.keepAlive);
    if (!s.res.writableEnded) s.res.end();
  };
  const notify = (s: OpenStream) => {
    if (!s.res.writableEnded) s.res.write(LIST_CHANGED);
  };
  const track = (p: Promise<void>) => {
    const tracked = p.catch((e: unknown) => deps.log.error({ err: e }, "an MCP stream check failed"));
    checks.add(tracked);
    void tracked.finally(() => checks.delete(tracked));
    return tracked;
  };
  /** Ends the stream unless its token still authenticates as the same token. */
  const recheck = (s: OpenStream) =>
    track(
      (async () => {
        const still = await deps.tokens.authenticate(s.token).catch(() => undefined);
        if (still?.tokenId !== s.identity.tokenId) end(s);
      })(),
    );
  const keepAlive = (s: OpenStream) => {
    if (!s.res.writableEnded) s.res.write(": keep-alive\n\n");
    const live = deps.sessionLive;
    if (live)
      void track(
        (async () => {
          if (!(await live(s.session))) end(s);
        })(),
      );
  };
  return {
    /** Answers `res` as an SSE stream of list changes for the agent, until either side ends it. */
    open(res: ServerResponse, identity: AgentIdentity, token: string, session: string): void {
      // The client may have gone while its token and session were being checked.
      if (res.destroyed || res.writableEnded || res.socket?.destroyed) return;
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
        "x-content-type-options": "nosniff",
      });
      res.flushHeaders();
      const s = { identity, token, session, res } as OpenStream;
      s.keepAlive = setInterval(() => keepAlive(s), deps.keepAliveMs ?? 25_000);
      s.keepAlive.unref();
      streams.add(s);
      res.on("close", () => end(s));
      // A revocation that came between the token check and now must count too.
      void recheck(s);
      const waiting = opened;
      opened = [];
      for (const w of waiting) w();
    },

    /** Tells the streams a change could concern (called with every change the bus delivers). */
    async changed(change: Change): Promise<void> {
      if (change.kind === "policy") {
        for (const s of streams) if (s.identity.project === change.project) notify(s);
      } else if (change.kind === "resync" || change.kind === "tokens") {
        // After a resync, changes may have been missed: a revocation among them, too.
        await Promise.all([...streams].map(recheck));
        if (change.kind === "resync") for (const s of streams) notify(s);
      }
    },

    /** Resolves when the checks under way (token and session re-checks) are done. */
    settled: async (): Promise<void> => {
      while (checks.size > 0) await Promise.all([...checks]);
    },

    /** Ends this instance's streams of a session (it was ended with DELETE). */
    endSession(session: string): void {
      for (const s of [...streams]) if (s.session === session) end(s);
    },

    /** How many streams are open here (a metric). */
    count: (): number => streams.size,

    /** Resolves when the next stream has been opened (its headers sent). */
    nextOpened: (): Promise<void> => new Promise((resolve) => opened.push(resolve)),

    /** Ends every stream (the server is stopping). */
    closeAll(): void {
      for (const s of [...streams]) end(s);
    },
  };
}

export type McpStreams = ReturnType<typeof createMcpStreams>;
