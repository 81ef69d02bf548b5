import type { AdminOps } from "../admin/admin-service.js";
import type { VerifyResult } from "../audit/verify.js";
import type { Butler } from "../butler/butler-service.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import type { Logger } from "../logger.js";
import type { CompiledProject } from "../policy/index.js";
import type { DashboardSessions } from "./sessions.js";

/** What the dashboard's routes need; each page group's plugin receives all of it. */
export interface DashboardDeps {
  db: Db;
  sessions: DashboardSessions;
  butler: Pick<
    Butler,
    | "list"
    | "listCards"
    | "card"
    | "review"
    | "listGrants"
    | "revokeGrant"
    | "grantProject"
    | "projectsOfApprover"
    | "mayDecide"
    | "remember"
  >;
  projects: () => ReadonlyMap<string, CompiledProject>;
  clock: Clock;
  admin: Pick<AdminOps, "showPolicy" | "policyHistory" | "policyRevision" | "agentHealth" | "simulatePolicy">;
  verifyAudit: () => Promise<VerifyResult>;
  /** Whether cookies get `Secure` (the server is reached over https). */
  secureCookies: boolean;
  /** Aborted when the server begins to close: live streams end. */
  closing: AbortSignal;
  log: Logger;
  /** How often a live stream looks for new audit events. */
  pollMs?: number;
}
