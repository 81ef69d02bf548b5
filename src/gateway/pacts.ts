import { and, desc, eq } from "drizzle-orm";
import { z } from "zod";
import type { AuditLog } from "../audit/audit-log.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db } from "../db/client.js";
import { agentPacts } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { PactDef } from "../policy/pact.js";
import { pactDefOf } from "../policy/parse.js";
import { pactShape } from "../policy/schema.js";

/**
 * Pacts set through the admin API (a person's decision, never an agent's): stored as revisions per
 * agent, each audited (`pact.set`, before and after); the newest revision is in force and takes
 * precedence over the project policy's `pacts:` entry (a revision of null hands the agent back to
 * the policy). Every instance keeps the pacts in force in memory, reloaded when any instance sets
 * one (change bus), so the call path reads them without the database.
 */

/** A pact as the API takes it: a policy `pacts:` entry without `agent` (the path names it). */
export const PactBody = z.strictObject(
  Object.fromEntries(Object.entries(pactShape).filter(([k]) => k !== "agent")) as Omit<
    typeof pactShape,
    "agent"
  >,
);

export function createPacts(deps: {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
}) {
  const { db, audit, changes } = deps;
  /** project NUL agent → the pact in force (null: the policy's applies). */
  let inForce = new Map<
    string,
    { pact: PactDef | null; revision: number; raw: Record<string, unknown> | null }
  >();
  const key = (project: string, agent: string) => `${project}\u0000${agent}`;

  /** Loads are serialised: one asked for while another runs runs after it (never an older result last). */
  let loading: Promise<void> | undefined;
  let again = false;
  function load(): Promise<void> {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        do {
          again = false;
          await loadOnce();
        } while (again);
      } finally {
        loading = undefined;
      }
    })();
    return loading;
  }

  async function loadOnce(): Promise<void> {
    const rows = await db
      .selectDistinctOn([agentPacts.project, agentPacts.agent])
      .from(agentPacts)
      .orderBy(agentPacts.project, agentPacts.agent, desc(agentPacts.revision));
    const next = new Map<
      string,
      { pact: PactDef | null; revision: number; raw: Record<string, unknown> | null }
    >();
    for (const r of rows) {
      const parsed = r.pact ? PactBody.safeParse(r.pact) : undefined;
      next.set(key(r.project, r.agent), {
        pact: parsed?.success ? pactDefOf({ ...parsed.data, agent: r.agent }) : null,
        revision: r.revision,
        raw: r.pact ?? null,
      });
    }
    inForce = next;
  }

  return {
    load,
    /** Reloads on every instance's changes (call once, before `load`, so that no change falls between). */
    watch(onError: (e: unknown) => void): void {
      changes.subscribe((c) => {
        if (c.kind === "pacts" || c.kind === "resync") load().catch(onError);
      });
    },
    /** Every API-set pact in force, by project and agent (null: handed back to the policy). */
    *all(): Iterable<{ project: string; agent: string; pact: PactDef | null }> {
      for (const [k, v] of inForce) {
        const [project, agent] = k.split("\u0000") as [string, string];
        yield { project, agent, pact: v.pact };
      }
    },
    /** The API-set pact in force for the agent: a pact, null (handed back to the policy), or undefined (never set). */
    get(project: string, agent: string) {
      return inForce.get(key(project, agent));
    },
    /** Sets (or, with null, clears) the agent's pact as a new revision, audited; the revision. */
    async set(
      project: string,
      agent: string,
      pact: z.output<typeof PactBody> | null,
      actor: string,
    ): Promise<number> {
      const revision = await db.transaction(async (tx) => {
        const [last] = await tx
          .select({ revision: agentPacts.revision, pact: agentPacts.pact })
          .from(agentPacts)
          .where(and(eq(agentPacts.project, project), eq(agentPacts.agent, agent)))
          .orderBy(desc(agentPacts.revision))
          .limit(1)
          .for("update");
        const revision = (last?.revision ?? 0) + 1;
        const [stored] = await tx
          .insert(agentPacts)
          .values({ project, agent, revision, pact, setBy: actor })
          .onConflictDoNothing()
          .returning({ revision: agentPacts.revision });
        if (!stored)
          throw new AppError(
            "CONFLICT",
            `the pact of ${agent} was set by someone else at the same moment; look again and retry`,
          );
        await audit.appendInTx(tx, [
          {
            type: "pact.set",
            agent,
            project,
            reason: pact
              ? `pact revision ${revision} set by ${actor}`
              : `pact cleared by ${actor}: the policy's applies`,
            details: { revision, set_by: actor, before: last?.pact ?? null, after: pact },
          },
        ]);
        await changes.publish(tx, { kind: "pacts" });
        return revision;
      });
      // Stored and audited: a failed reload here is not the caller's error (the change bus reloads too).
      await load().catch(() => undefined);
      return revision;
    },
  };
}

export type Pacts = ReturnType<typeof createPacts>;
