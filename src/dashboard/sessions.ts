import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.js";
import type { ApproverTokens, PersonRole } from "../butler/approver-tokens.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { AppError } from "../errors.js";
import {
  deleteEndedSessions,
  endSession,
  insertLinkCode,
  insertSession,
  liveSession,
  useLinkCode,
} from "./session-repo.js";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const COOKIE_SHAPE = /^[A-Za-z0-9_-]{43}$/;
const CODE_SHAPE = /^[A-Za-z0-9_-]{32}$/;

/** A signed-in person, as the dashboard's pages and checks see them. */
export interface DashboardSession {
  approver: string;
  role: PersonRole;
  csrf: string;
  expiresAt: Date;
}

/**
 * Dashboard sign-ins. A person signs in with their approver's (or auditor's) token, or with a
 * one-time link; they get a random cookie value whose hash alone is stored, with an expiry, and a
 * CSRF token that every state-changing request must carry.
 */
export function createDashboardSessions(deps: {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  approverTokens: Pick<ApproverTokens, "person">;
  ttlSeconds: number;
}) {
  const { db, audit, clock } = deps;

  async function open(
    person: { id: string; role: PersonRole },
    via: string,
  ): Promise<{ cookie: string; session: DashboardSession }> {
    const now = clock.now();
    const cookie = randomBytes(32).toString("base64url");
    const session = {
      approver: person.id,
      role: person.role,
      csrf: randomBytes(32).toString("base64url"),
      expiresAt: new Date(now.getTime() + deps.ttlSeconds * 1000),
    };
    await db.transaction(async (tx) => {
      await insertSession(tx, { idHash: sha256(cookie), ...session, createdAt: now });
      await audit.appendInTx(tx, [
        {
          type: "dashboard.signed_in",
          reason: `${person.role} ${person.id} signed in to the dashboard with ${via}`,
          at: now,
          details: {
            person: person.id,
            role: person.role,
            via,
            session_expires: session.expiresAt.toISOString(),
          },
        },
      ]);
    });
    return { cookie, session };
  }

  return {
    async signInWithToken(token: string) {
      const person = await deps.approverTokens.person(token.trim());
      if (!person)
        throw new AppError(
          "UNAUTHENTICATED",
          "that is not a valid approver's or auditor's token (bap_… or bau_…; unknown or revoked)",
        );
      return open(person, "a token");
    },

    /** A one-time sign-in link's code for an approver (15 minutes), audited without the code. */
    async createSignInCode(approver: string, actor: string): Promise<{ code: string; expiresAt: Date }> {
      const now = clock.now();
      const code = randomBytes(24).toString("base64url");
      const expiresAt = new Date(now.getTime() + 15 * 60 * 1000);
      await db.transaction(async (tx) => {
        await insertLinkCode(tx, { codeHash: sha256(code), approver, createdAt: now, expiresAt });
        await audit.appendInTx(tx, [
          {
            type: "dashboard.link_created",
            reason: `one-time dashboard sign-in link for ${approver}, until ${expiresAt.toISOString()}`,
            at: now,
            details: { person: approver, actor },
          },
        ]);
      });
      return { code, expiresAt };
    },

    async signInWithCode(code: string) {
      const now = clock.now();
      const approver = CODE_SHAPE.test(code) ? await useLinkCode(db, sha256(code), now) : undefined;
      if (!approver)
        throw new AppError(
          "UNAUTHENTICATED",
          "this sign-in link is not valid: it was used already, it expired, or it was mistyped; ask for a new one (butler dashboard link <approver>)",
        );
      return open({ id: approver, role: "approver" }, "a one-time link");
    },

    async lookup(cookie: string | undefined): Promise<DashboardSession | undefined> {
      if (!cookie || !COOKIE_SHAPE.test(cookie)) return undefined;
      const row = await liveSession(db, sha256(cookie), clock.now());
      return row
        ? { approver: row.approver, role: row.role, csrf: row.csrf, expiresAt: row.expiresAt }
        : undefined;
    },

    /** Forgets sessions that ended (expired or signed out) more than a day ago. */
    async purge(): Promise<number> {
      return deleteEndedSessions(db, new Date(clock.now().getTime() - 86_400_000));
    },

    async signOut(cookie: string, session: DashboardSession): Promise<void> {
      const now = clock.now();
      await db.transaction(async (tx) => {
        await endSession(tx, sha256(cookie), now);
        await audit.appendInTx(tx, [
          {
            type: "dashboard.signed_out",
            reason: `${session.role} ${session.approver} signed out`,
            at: now,
            details: { person: session.approver, role: session.role },
          },
        ]);
      });
    },
  };
}

/** Whether a request's CSRF token is the session's, in constant time. */
export function csrfMatches(session: DashboardSession, sent: unknown): boolean {
  if (typeof sent !== "string") return false;
  const a = Buffer.from(sent);
  const b = Buffer.from(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

export type DashboardSessions = ReturnType<typeof createDashboardSessions>;
