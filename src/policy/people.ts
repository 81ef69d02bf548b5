import type { ApproverDef, PolicyDocument } from "./types.js";

/**
 * People: who approvers are, across every project. An approver id names ONE person everywhere:
 * their name, email and chat accounts may be written in one project's `approvers:` (or, identical,
 * in several), and any other project lists just the id (and the tiers that person decides there).
 * Which projects a person approves is each project's own business; who the person is, is not.
 *
 * Pure: built from parsed documents, used by `policy validate` (with file positions) and, at run
 * time, from the policies in force, to turn a chat account into exactly one person or nobody.
 */

export type ChatChannel = "slack" | "telegram";

/** The identity fields of an approver entry; an entry with none of them only refers to the person. */
export interface PersonIdentity {
  name?: string | undefined;
  email?: string | undefined;
  slackUserId?: string | undefined;
  slackEmail?: string | undefined;
  telegramUserId?: string | undefined;
}

/** Where an approver entry was written: a project (and a file, when known) and its index there. */
export interface EntryAt {
  project: string;
  file?: string | undefined;
  index: number;
}

/** Two entries that disagree on who a person is, or two people claiming one chat account. */
export type PeopleConflict =
  | { kind: "person"; id: string; entries: { at: EntryAt; identity: PersonIdentity }[] }
  | {
      kind: "account";
      channel: ChatChannel;
      /** `user 123` or `email a@b.c`, for messages. */
      account: string;
      claims: { id: string; at: EntryAt; path: (string | number)[] }[];
    };

export interface PeopleDirectory {
  /** Ids whose definitions disagree: they decide nothing until the files agree. */
  conflicted: Set<string>;
  conflicts: PeopleConflict[];
  /** Chat accounts (`slack:U123`, `slack-email:a@b.c`, `telegram:42`) and the people claiming them. */
  accounts: Map<string, Set<string>>;
}

export function identityOf(a: ApproverDef): PersonIdentity {
  const id: PersonIdentity = {};
  if (a.name !== undefined) id.name = a.name;
  if (a.email !== undefined) id.email = a.email.toLowerCase();
  if (a.slack?.userId !== undefined) id.slackUserId = a.slack.userId;
  if (a.slack?.email !== undefined) id.slackEmail = a.slack.email.toLowerCase();
  if (a.telegram?.userId !== undefined) id.telegramUserId = a.telegram.userId;
  return id;
}

const FIELDS: (keyof PersonIdentity)[] = ["name", "email", "slackUserId", "slackEmail", "telegramUserId"];

function isDefinition(i: PersonIdentity): boolean {
  return FIELDS.some((f) => i[f] !== undefined);
}

function sameIdentity(a: PersonIdentity, b: PersonIdentity): boolean {
  return FIELDS.every((f) => a[f] === b[f]);
}

/** `telegram user 42, slack user U1` — the parts of an identity, for messages. */
export function describeIdentity(i: PersonIdentity): string {
  const parts: string[] = [];
  if (i.name !== undefined) parts.push(`name ${JSON.stringify(i.name)}`);
  if (i.email !== undefined) parts.push(`email ${i.email}`);
  if (i.slackUserId !== undefined) parts.push(`Slack user ${i.slackUserId}`);
  if (i.slackEmail !== undefined) parts.push(`Slack email ${i.slackEmail}`);
  if (i.telegramUserId !== undefined) parts.push(`Telegram user ${i.telegramUserId}`);
  return parts.join(", ") || "no accounts";
}

/** The chat accounts an identity can name: the field, its key prefix, how messages and files name it. */
const ACCOUNTS: {
  field: "slackUserId" | "slackEmail" | "telegramUserId";
  prefix: string;
  channel: ChatChannel;
  label: string;
  path: string[];
}[] = [
  { field: "slackUserId", prefix: "slack", channel: "slack", label: "user", path: ["slack", "user_id"] },
  { field: "slackEmail", prefix: "slack-email", channel: "slack", label: "email", path: ["slack", "email"] },
  {
    field: "telegramUserId",
    prefix: "telegram",
    channel: "telegram",
    label: "user",
    path: ["telegram", "user_id"],
  },
];

/** The account keys (`slack:U1`, `slack-email:a@b.c`, `telegram:42`) an identity claims. */
function accountsOf(i: PersonIdentity) {
  return ACCOUNTS.flatMap((a) => {
    const v = i[a.field];
    return v === undefined
      ? []
      : [{ key: `${a.prefix}:${v}`, channel: a.channel, account: `${a.label} ${v}`, path: a.path }];
  });
}

/** The keys a chat account is known by: its user id, and for Slack its email when known. */
function keysOfAccount(account: { channel: string; userId: string; email?: string | undefined }): string[] {
  return [
    `${account.channel}:${account.userId}`,
    ...(account.channel === "slack" && account.email ? [`slack-email:${account.email.toLowerCase()}`] : []),
  ];
}

/** Whether an approver entry (one project's) names this chat account as the person's. */
export function entryNamesAccount(
  entry: ApproverDef,
  account: { channel: string; userId: string; email?: string | undefined },
): boolean {
  const own = new Set(accountsOf(identityOf(entry)).map((a) => a.key));
  return keysOfAccount(account).some((k) => own.has(k));
}

/**
 * Collects the people of several projects' documents (in a stable order: by project name) and
 * every way they disagree.
 */
export function collectPeople(docs: readonly { document: PolicyDocument; file?: string }[]): PeopleDirectory {
  const defs = new Map<string, { at: EntryAt; identity: PersonIdentity }[]>();
  const sorted = [...docs].sort((a, b) =>
    a.document.project < b.document.project ? -1 : a.document.project > b.document.project ? 1 : 0,
  );
  for (const { document, file } of sorted) {
    document.approvers.forEach((a, index) => {
      const identity = identityOf(a);
      if (!isDefinition(identity)) return;
      const list = defs.get(a.id) ?? [];
      list.push({ at: { project: document.project, file, index }, identity });
      defs.set(a.id, list);
    });
  }
  const conflicts: PeopleConflict[] = [];
  const conflicted = new Set<string>();
  for (const [id, list] of defs) {
    if (list.some((d) => !sameIdentity(d.identity, list[0]!.identity))) {
      conflicted.add(id);
      conflicts.push({ kind: "person", id, entries: list });
    }
  }
  // Every account claimed by every definition (conflicting ones included: an account named for a
  // person anywhere must never resolve to somebody else).
  const accounts = new Map<string, Set<string>>();
  const claims = new Map<
    string,
    { channel: ChatChannel; account: string; list: { id: string; at: EntryAt; path: (string | number)[] }[] }
  >();
  for (const [id, list] of defs) {
    for (const d of list) {
      for (const acc of accountsOf(d.identity)) {
        const set = accounts.get(acc.key) ?? new Set<string>();
        set.add(id);
        accounts.set(acc.key, set);
        const c = claims.get(acc.key) ?? { channel: acc.channel, account: acc.account, list: [] };
        c.list.push({ id, at: d.at, path: acc.path });
        claims.set(acc.key, c);
      }
    }
  }
  for (const [key, ids] of accounts) {
    if (ids.size < 2) continue;
    const c = claims.get(key)!;
    conflicts.push({ kind: "account", channel: c.channel, account: c.account, claims: c.list });
  }
  return { conflicted, conflicts, accounts };
}

/** How a chat account resolved: to exactly one person, to nobody, or to several (refused). */
export type Resolution =
  | { kind: "person"; id: string }
  | { kind: "nobody" }
  | { kind: "ambiguous"; ids: string[] };

/**
 * The person behind a chat account: the policies' Slack user ids and emails or Telegram user ids,
 * plus the accounts people bound themselves (link codes). Exactly one person, or nobody: an
 * account two people claim, or a person whose definitions disagree, decides nothing.
 */
export function resolveChatAccount(
  dir: PeopleDirectory,
  account: { channel: ChatChannel; userId: string; email?: string | undefined },
  boundTo: string | undefined,
): Resolution {
  const ids = new Set<string>();
  for (const key of keysOfAccount(account)) for (const id of dir.accounts.get(key) ?? []) ids.add(id);
  if (boundTo !== undefined) ids.add(boundTo);
  if (ids.size === 0) return { kind: "nobody" };
  if (ids.size > 1) return { kind: "ambiguous", ids: [...ids].sort() };
  const [id] = [...ids] as [string];
  if (dir.conflicted.has(id)) return { kind: "ambiguous", ids: [id] };
  return { kind: "person", id };
}

const byIndex = new WeakMap<object, PeopleDirectory>();

/** The people of the policies in force (computed once per index; indexes are never mutated). */
export function peopleOf(index: {
  projects: ReadonlyMap<string, { document: PolicyDocument }>;
}): PeopleDirectory {
  let dir = byIndex.get(index);
  if (!dir) {
    dir = collectPeople([...index.projects.values()].map((p) => ({ document: p.document })));
    byIndex.set(index, dir);
  }
  return dir;
}
