import { normaliseCommand, textDenyService } from "./command.js";
import { type Glob, mustCompileGlob } from "./glob.js";
import type { ApprovalRuleDef, ConstraintDef, GrantDef, PolicyDocument } from "./types.js";

/**
 * The decision index: policies compiled once per revision so that a decision costs a few Map
 * lookups and glob matches, however many projects and grants there are.
 *
 * project name → agent → roles, and service → exact verb → grants (plus the grants whose action is
 * a pattern). A call only ever looks at the grants of its own project and service.
 */
export interface PolicyIndex {
  readonly projects: ReadonlyMap<string, CompiledProject>;
}

export interface CompiledProject {
  readonly name: string;
  readonly revision: number;
  readonly document: PolicyDocument;
  /** Agent name → its roles. */
  readonly agentRoles: ReadonlyMap<string, ReadonlySet<string>>;
  readonly services: ReadonlyMap<string, ServiceIndex>;
  /** Full action (`aws:s3:GetObject`) → grants listing it exactly: the common case, one lookup. */
  readonly exactActions: ReadonlyMap<string, readonly CompiledGrant[]>;
  /** `settings.never_grant`, compiled. */
  readonly neverGrant: readonly Glob[];
  /** `require_approval`, compiled. */
  readonly requireApproval: readonly CompiledApprovalRule[];
}

export interface CompiledApprovalRule {
  readonly id: string;
  readonly def: ApprovalRuleDef;
  readonly actions: readonly Glob[];
  readonly agents: ReadonlySet<string> | undefined;
  readonly roles: ReadonlySet<string> | undefined;
  readonly when: readonly CompiledConstraint[];
}

export interface ServiceIndex {
  /** Grants listing this exact verb (e.g. `s3:GetObject`). */
  readonly exact: ReadonlyMap<string, readonly CompiledGrant[]>;
  /** Grants with at least one wildcard action; each is checked with `matchesAction`. */
  readonly patterned: readonly CompiledGrant[];
}

export interface CompiledConstraint {
  readonly param: string;
  readonly path: readonly string[];
  readonly max: number | undefined;
  readonly min: number | undefined;
  readonly in: ReadonlySet<string> | undefined;
  readonly inText: string;
  readonly notIn: ReadonlySet<string> | undefined;
  readonly notInText: string;
  readonly pattern: Glob | undefined;
}

export interface CompiledGrant {
  readonly id: string;
  readonly service: string;
  readonly def: GrantDef;
  readonly actionPatterns: readonly Glob[];
  readonly resources: readonly Glob[] | undefined;
  readonly branches: readonly Glob[] | undefined;
  readonly agents: ReadonlySet<string> | undefined;
  readonly roles: ReadonlySet<string> | undefined;
  readonly constraints: readonly CompiledConstraint[];
  /** For `tools`: normalised command fragments. */
  readonly denyText: readonly string[];
  /** For other services: resource patterns that are refused. */
  readonly denyResources: readonly Glob[];
  readonly expiresAt: number | undefined;
  /** Precomputed so that an ALLOW allocates nothing but its result. */
  readonly allowReason: string;
  /** Precomputed pieces of DENY reasons. */
  readonly expiredReason: string;
  readonly resourcesText: string;
  readonly branchesText: string;
  readonly limitsText: string;
}

/** A project's document with the revision it was stored as, and grants added at run time. */
export interface ProjectInput {
  document: PolicyDocument;
  revision: number;
  /** Grants that are not in the document (later: approved access requests). */
  extraGrants?: readonly GrantDef[];
  /**
   * Grants compiled already (`compileGrant`), added after the document's: an instance keeps the
   * grants of approved requests compiled once each, so that a new revision (one more grant)
   * costs one grant's compilation, not every grant's again.
   */
  compiledGrants?: readonly CompiledGrant[];
}

export function compilePolicies(inputs: readonly ProjectInput[]): PolicyIndex {
  const projects = new Map<string, CompiledProject>();
  for (const input of inputs) projects.set(input.document.project, compileProject(input));
  return { projects };
}

export function compileProject({
  document,
  revision,
  extraGrants = [],
  compiledGrants = [],
}: ProjectInput): CompiledProject {
  const agentRoles = new Map<string, ReadonlySet<string>>();
  for (const a of document.agents) agentRoles.set(a.name, new Set(a.roles));
  const building = new Map<string, { exact: Map<string, CompiledGrant[]>; patterned: CompiledGrant[] }>();
  const all = [
    ...[...document.grants, ...extraGrants].map((d) => compileGrant(d, document.project)),
    ...compiledGrants,
  ];
  for (const grant of all) {
    const def = grant.def;
    let svc = building.get(def.service);
    if (!svc) {
      svc = { exact: new Map(), patterned: [] };
      building.set(def.service, svc);
    }
    let patterned = false;
    for (const g of grant.actionPatterns) {
      if (g.literal !== undefined) {
        const list = svc.exact.get(g.literal) ?? [];
        // A grant listing the same verb twice is indexed once (its patterns are walked in a row).
        if (list.at(-1) !== grant) list.push(grant);
        svc.exact.set(g.literal, list);
      } else {
        patterned = true;
      }
    }
    if (patterned) svc.patterned.push(grant);
  }
  const exactActions = new Map<string, CompiledGrant[]>();
  for (const [service, svc] of building) {
    for (const [verb, grants] of svc.exact) exactActions.set(`${service}:${verb}`, grants);
  }
  return {
    name: document.project,
    revision,
    document,
    agentRoles,
    services: building,
    exactActions,
    neverGrant: document.settings.neverGrant.map(mustCompileGlob),
    requireApproval: document.requireApproval.map((r) => ({
      id: r.id,
      def: r,
      actions: r.actions.map(mustCompileGlob),
      agents: r.agents ? new Set(r.agents) : undefined,
      roles: r.roles ? new Set(r.roles) : undefined,
      when: r.when.map(compileConstraint),
    })),
  };
}

export function compileConstraint(c: ConstraintDef): CompiledConstraint {
  return {
    param: c.param,
    path: c.param.split("."),
    max: c.max,
    min: c.min,
    in: c.in ? new Set(c.in.map(String)) : undefined,
    inText: c.in ? `[${c.in.join(", ")}]` : "",
    notIn: c.not_in ? new Set(c.not_in.map(String)) : undefined,
    notInText: c.not_in ? `[${c.not_in.join(", ")}]` : "",
    pattern: c.pattern === undefined ? undefined : mustCompileGlob(c.pattern),
  };
}

/** One grant of `project`, compiled. */
export function compileGrant(def: GrantDef, project: string): CompiledGrant {
  const tools = textDenyService(def.service);
  return {
    id: def.id,
    service: def.service,
    def,
    actionPatterns: def.actions.map(mustCompileGlob),
    resources: def.resources?.map(mustCompileGlob),
    branches: def.branches?.map(mustCompileGlob),
    agents: def.agents ? new Set(def.agents) : undefined,
    roles: def.roles ? new Set(def.roles) : undefined,
    constraints: def.constraints.map(compileConstraint),
    denyText: tools ? def.deny.map(normaliseCommand).filter((d) => d.length > 0) : [],
    denyResources: tools ? [] : def.deny.map(mustCompileGlob),
    expiresAt: def.expiresAt,
    allowReason: `allowed by grant ${def.id} of ${project}`,
    expiredReason:
      def.expiresAt === undefined
        ? ""
        : `grant ${def.id} expired at ${new Date(def.expiresAt).toISOString()}`,
    resourcesText: def.resources?.join(", ") ?? "*",
    branchesText: def.branches?.join(", ") ?? "*",
    limitsText: [
      def.agents && `agents ${def.agents.join(", ")}`,
      def.roles && `roles ${def.roles.join(", ")}`,
    ]
      .filter(Boolean)
      .join(" and "),
  };
}

/**
 * `project` with `extra` grants added (for example a proposed grant, to decide past calls as if it
 * had been approved): its own compiled grants are reused, the document's not compiled again.
 */
export function withGrants(project: CompiledProject, extra: readonly GrantDef[]): CompiledProject {
  const held = new Set<CompiledGrant>();
  for (const svc of project.services.values()) {
    for (const list of svc.exact.values()) for (const g of list) held.add(g);
    for (const g of svc.patterned) held.add(g);
  }
  // The document's own grants are compiled again from it (cheap); those added to it are reused.
  const own = new Set(project.document.grants);
  return compileProject({
    document: project.document,
    revision: project.revision,
    compiledGrants: [
      ...[...held].filter((g) => !own.has(g.def)),
      ...extra.map((d) => compileGrant(d, project.name)),
    ],
  });
}
