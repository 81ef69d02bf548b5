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
