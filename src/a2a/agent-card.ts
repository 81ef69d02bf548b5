import { A2A_PROTOCOL_VERSION, type AgentCard } from "@a2a-js/sdk";

/**
 * The Butler's agent card (pure): one skill, "request access", over JSON-RPC at `${publicUrl}/a2a`,
 * called with the agent's Butler token.
 */
export const agentCard = (publicUrl: string, version: string): AgentCard => ({
  name: "Butler",
  description:
    "Governance gateway for AI agents: ask for access to an action that was denied, and hear back the moment a human approves. No agent can grant itself anything.",
  version: version,
  supportedInterfaces: [
    {
      url: `${publicUrl}/a2a`,
      protocolBinding: "JSONRPC",
      tenant: "",
      protocolVersion: A2A_PROTOCOL_VERSION,
    },
  ],
  provider: { organization: "Butler", url: publicUrl },
  capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: false },
  securitySchemes: {
    bearer: {
      scheme: {
        $case: "httpAuthSecurityScheme",
        value: {
          scheme: "Bearer",
          bearerFormat: "butler-agent-token",
          description: "The agent's Butler token (butler agents create), the same one /v1/authorize takes.",
        },
      },
    },
  },
  securityRequirements: [{ schemes: { bearer: { list: [] } } }],
  defaultInputModes: ["application/json"],
  defaultOutputModes: ["application/json", "text/plain"],
  skills: [
    {
      id: "request-access",
      name: "Request access",
      description:
        "Files a scoped access request for a call the gateway denied. The task stays INPUT_REQUIRED while the project's approvers decide, then COMPLETED with the grant {grant_id, request_id, action, resource, branch, expires_at, revision, state, revoked_at, approved_by, reason} as its artifact (the task's metadata.butler is {request_id, project, agent}), REJECTED with the approver's reason, CANCELED, or FAILED when nobody decided in time.",
      tags: ["access", "approval", "governance"],
      examples: [
        '{"action":"stripe:charges:read","resource":"stripe.com/v1/charges","ttl":"PT1H","reason":"reconcile payouts","denial_event_id":"evt_0123456789abcdef"}',
        '{"action":"git:push","resource":"github.com/acme/api","branch":"feature/*","ttl":"PT30M","reason":"push the fix for ISSUE-42"}',
      ],
      inputModes: ["application/json"],
      outputModes: ["application/json", "text/plain"],
      securityRequirements: [],
    },
  ],
  signatures: [],
});
