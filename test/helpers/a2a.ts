import { randomUUID } from "node:crypto";
import { Role, type SendMessageConfiguration, type Task, type TaskPushNotificationConfig } from "@a2a-js/sdk";
import {
  type Client,
  ClientFactory,
  ClientFactoryOptions,
  JsonRpcTransportFactory,
} from "@a2a-js/sdk/client";

/** The official A2A client, carrying an agent's Butler token. */
export async function a2aClient(baseUrl: string, token: string): Promise<Client> {
  const authFetch: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set("authorization", `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  return new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl: authFetch })],
    }),
  ).createFromUrl(baseUrl);
}

export function ask(data: Record<string, unknown> | undefined, text?: string) {
  return {
    tenant: "",
    message: {
      messageId: randomUUID(),
      contextId: "",
      taskId: "",
      role: Role.ROLE_USER,
      parts: [
        ...(data
          ? [
              {
                content: { $case: "data" as const, value: data },
                metadata: undefined,
                filename: "",
                mediaType: "application/json",
              },
            ]
          : []),
        ...(text
          ? [
              {
                content: { $case: "text" as const, value: text },
                metadata: undefined,
                filename: "",
                mediaType: "text/plain",
              },
            ]
          : []),
      ],
      metadata: undefined,
      extensions: [],
      referenceTaskIds: [],
    },
    configuration: undefined,
    metadata: undefined,
  };
}

export const statusText = (t: Task | undefined) => {
  const p = t?.status?.message?.parts[0]?.content;
  return p?.$case === "text" ? p.value : "";
};
export const grantOf = (t: Task) => {
  const p = t.artifacts.find((a) => a.artifactId === "grant")?.parts[0]?.content;
  return p?.$case === "data" ? (p.value as Record<string, unknown>) : undefined;
};

/** SendMessage configuration asking for push notifications to `url`. */
export function withPush(
  url: string,
  extra: Partial<Pick<TaskPushNotificationConfig, "id" | "token" | "authentication">> & {
    returnImmediately?: boolean;
  } = {},
): SendMessageConfiguration {
  return {
    acceptedOutputModes: [],
    historyLength: undefined,
    returnImmediately: extra.returnImmediately ?? false,
    taskPushNotificationConfig: {
      tenant: "",
      id: extra.id ?? "",
      taskId: "",
      url,
      token: extra.token ?? "",
      authentication: extra.authentication,
    },
  };
}

/**
 * Every key of an A2A JSON value (a task, a push body, a JSON-RPC result) as a path, split in two:
 * the keys of the objects the Butler defines (a task's `metadata.butler`, the `data` of a part in
 * an artifact or in a message the Butler wrote) and the protocol's own fields around them.
 * Messages the agent wrote (`ROLE_USER`) are the agent's words and are left out.
 */
export function a2aKeys(v: unknown): { butler: string[]; protocol: string[] } {
  const out = { butler: [] as string[], protocol: [] as string[] };
  const walk = (x: unknown, at: string, butler: boolean) => {
    if (Array.isArray(x)) {
      for (const [i, y] of x.entries()) walk(y, `${at}[${i}]`, butler);
    } else if (x !== null && typeof x === "object") {
      if ((x as { role?: unknown }).role === "ROLE_USER") return;
      for (const [k, y] of Object.entries(x)) {
        const path = `${at}.${k}`;
        (butler ? out.butler : out.protocol).push(path);
        const ours =
          (k === "butler" && at.endsWith(".metadata")) || (k === "data" && /\.parts\[\d+\]$/.test(at));
        walk(y, path, butler || ours);
      }
    }
  };
  walk(v, "", false);
  return out;
}

/** The keys of `a2aKeys` that break the convention: camelCase in the Butler's objects, snake_case in the protocol's. */
export function misnamedKeys(v: unknown): { butler: string[]; protocol: string[] } {
  const { butler, protocol } = a2aKeys(v);
  const last = (p: string) => p.split(".").at(-1)!;
  return {
    butler: butler.filter((p) => /[A-Z]/.test(last(p))),
    protocol: protocol.filter((p) => last(p).includes("_")),
  };
}
