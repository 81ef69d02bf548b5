import { z } from "zod";
import { paramsObject, safeText } from "../http/validation.js";

/** A TTL as the API takes it: an ISO 8601 duration or a number of seconds. */
export const ttl = z.union([safeText(64), z.number()], {
  error: "must be an ISO 8601 duration such as PT24H, or a number of seconds",
});

/** An access request as an agent files it, over REST or A2A. */
export const CreateRequestBody = z.strictObject({
  action: safeText(256).optional(),
  resource: safeText(2048).optional(),
  branch: safeText(256).optional(),
  /** A resource glob the grant should name instead of the resource exactly; it must match the call's resource. */
  resource_pattern: safeText(1024).optional(),
  ttl: ttl.optional(),
  reason: safeText(2000).refine(
    (s) => s.trim().length > 0,
    "is required: say why the agent needs this, for the person who decides",
  ),
  denial_event_id: z
    .string()
    .regex(/^evt_[a-z0-9]{16}$/, "must be an event id such as evt_0123456789abcdef")
    .optional(),
  /** For a one-shot request (the denial said approval_required): the denied call's params, unchanged. */
  params: paramsObject.optional(),
});

/** Emergency access, as a person opens it: the call exactly (no patterns), for at most the project's limit. */
export const BreakGlassBody = z.strictObject({
  project: safeText(128),
  agent: safeText(128),
  action: safeText(256),
  resource: safeText(2048).optional(),
  branch: safeText(256).optional(),
  ttl: z.union([safeText(64), z.number()]).optional(),
  reason: safeText(2000).refine((s) => s.trim().length > 0, "is required: say why, for the review"),
});
