import type { CompiledGrant, CompiledProject } from "./compile.js";
import type { Call, Decision } from "./types.js";

/**
 * What `evaluate` remembers of one compiled project's decisions (see evaluate.ts for how it is
 * used). Attached to the CompiledProject object itself (see memoOf), so a new
 * revision, which is a new object, starts with nothing, and a revision nobody serves any more is
 * collected together with its memo. A CompiledProject must not be changed once decisions have
 * been made with it.
 *
 * Bounded: at most MEMO_MAX_ENTRIES remembered (agent, action) and (agent, action, resource,
 * branch) keys per project, after which the whole memo is dropped and refilled (so an agent that
 * sends endless distinct resources costs memory once, and what it evicts is decided again at the
 * unmemoized cost); calls whose action, resource and branch together are longer than
 * MEMO_MAX_KEY_CHARS are never remembered.
 */
export const MEMO_MAX_ENTRIES = 2048;
export const MEMO_MAX_KEY_CHARS = 512;

export const NO_GRANTS: readonly CompiledGrant[] = Object.freeze([]);

/**
 * What is remembered for one (agent, action, resource, branch): the answer itself when it holds
 * for every parameter value and at every time; else a MemoEntry.
 */
export type Remembered = Decision | MemoEntry;

/**
 * Either an answer (`decision`) valid while `from <= now < until` (no covering grant expires in
 * between), or, when a covering grant looks at the call's parameters (constraints, command deny
 * patterns), the grants that cover the call, in order, and the most specific failure among those
 * that do not.
 */
export class MemoEntry {
  /** For parameter-dependent entries: the ALLOW by covering[i], once made. */
  allowed: Decision[] | undefined = undefined;
  /** For parameter-dependent entries: the DENY by a command deny pattern of covering[i], per pattern. */
  commandDenied: Map<string, Decision>[] | undefined = undefined;
  constructor(
    readonly decision: Decision | undefined,
    readonly from: number,
    readonly until: number,
    readonly covering: readonly CompiledGrant[],
    readonly rank: number,
    readonly failed: CompiledGrant | undefined,
  ) {}
}

/**
 * What is remembered for one (agent, action): an answer that needs nothing more (`answer`:
 * invalid action, nothing grants the service or the action), or the grants whose action matches
 * and that cover the agent, with the most specific failure among those that do not; and what is
 * remembered of the resources (and branches) it was called on.
 */
export class ActionEntry {
  /** Resource → entry, for calls without a branch. */
  resources: Map<string, Remembered> | undefined = undefined;
  /** Branch → resource → entry. */
  branches: Map<string, Map<string, Remembered>> | undefined = undefined;
  constructor(
    readonly answer: Decision | undefined,
    readonly candidates: readonly CompiledGrant[],
    readonly rank: number,
    readonly failed: CompiledGrant | undefined,
  ) {}

  /** What is remembered for the call's resource and branch, if anything (it may be out of date). */
  find(call: Call): Remembered | undefined {
    if (call.branch === undefined) return this.resources?.get(call.resource);
    return this.branches?.get(call.branch)?.get(call.resource);
  }
}

export class DecisionMemo {
  /** agent → action → entry. */
  private readonly agents = new Map<string, Map<string, ActionEntry>>();
  /** Agents that are not in the project → the answer to any of their calls. */
  private readonly strangers = new Map<string, Decision>();
  private size = 0;

  constructor(readonly revision: number) {}

  /** How many entries it holds ((agent, action) steps, resource entries, unknown agents). */
  get entries(): number {
    return this.size;
  }

  /** The (agent, action) step remembered for the call, if any. */
  action(call: Call): ActionEntry | undefined {
    return this.agents.get(call.agent)?.get(call.action);
  }

  /** The answer to an agent that is not in the project, if remembered. */
  stranger(agent: string): Decision | undefined {
    return this.strangers.get(agent);
  }

  rememberStranger(agent: string, answer: Decision): void {
    if (agent.length > MEMO_MAX_KEY_CHARS) return;
    this.reserve();
    this.strangers.set(agent, answer);
  }

  /** Remembers the (agent, action) step; false when the call is not to be remembered. */
  storeAction(call: Call, entry: ActionEntry): boolean {
    if (call.action.length > MEMO_MAX_KEY_CHARS) return false;
    this.reserve();
    this.putAction(call, entry);
    return true;
  }

  /**
   * Remembers the entry of the call's resource and branch under its (agent, action) step;
   * `replacing` when the step already has an (out of date) entry for them.
   */
  store(action: ActionEntry, call: Call, entry: Remembered, replacing: boolean): void {
    const { resource, branch } = call;
    // (A call not typed as declared, say a resource left undefined, is answered but not remembered.)
    if (typeof resource !== "string" || (branch !== undefined && typeof branch !== "string")) return;
    if (call.action.length + resource.length + (branch?.length ?? 0) > MEMO_MAX_KEY_CHARS) return;
    if (!replacing && this.reserve()) {
      // The memo was just dropped: the (agent, action) step goes back in first.
      this.putAction(call, action);
      this.size++;
    }
    if (branch === undefined) {
      action.resources ??= new Map();
      action.resources.set(resource, entry);
      return;
    }
    action.branches ??= new Map();
    let byResource = action.branches.get(branch);
    if (byResource === undefined) {
      byResource = new Map();
      action.branches.set(branch, byResource);
    }
    byResource.set(resource, entry);
  }

  /** Makes room for one more entry: true when the memo had to be dropped for it. */
  private reserve(): boolean {
    if (this.size < MEMO_MAX_ENTRIES) {
      this.size++;
      return false;
    }
    for (const actions of this.agents.values())
      for (const a of actions.values()) {
        a.resources = undefined;
        a.branches = undefined;
      }
    this.agents.clear();
    this.strangers.clear();
    this.size = 1;
    return true;
  }

  private putAction(call: Call, entry: ActionEntry): void {
    let actions = this.agents.get(call.agent);
    if (actions === undefined) {
      actions = new Map();
      this.agents.set(call.agent, actions);
    }
    actions.set(call.action, entry);
  }
}

/**
 * Where a compiled project's memo is kept: a property of the object itself, under a symbol and not
 * enumerable, so that a copy of the object (`{ ...project }`) does not take it along and nothing
 * that compares or serialises compiled projects sees it; a WeakMap for objects that cannot take a
 * property (frozen).
 */
const MEMO = Symbol("decisionMemo");
const frozenMemos = new WeakMap<CompiledProject, DecisionMemo>();

type Carrying = CompiledProject & { [MEMO]?: DecisionMemo };

/** The memo of this compiled project (made on first use). */
export function memoOf(project: CompiledProject): DecisionMemo {
  const m = (project as Carrying)[MEMO];
  if (m !== undefined && m.revision === project.revision) return m;
  return attach(project);
}

function attach(project: CompiledProject): DecisionMemo {
  if (!Object.isExtensible(project)) {
    let m = frozenMemos.get(project);
    if (m === undefined || m.revision !== project.revision) {
      m = new DecisionMemo(project.revision);
      frozenMemos.set(project, m);
    }
    return m;
  }
  const m = new DecisionMemo(project.revision);
  Object.defineProperty(project, MEMO, { value: m, writable: true, configurable: true, enumerable: false });
  return m;
}
