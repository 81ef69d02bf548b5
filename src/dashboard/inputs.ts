import { z } from "zod";
import { REQUEST_STATUSES } from "../db/schema.js";
import { safeText } from "../http/validation.js";

/** The dashboard's inputs: path parameters, forms and the one query schema every page shares. */

export const RequestId = z.string().regex(/^req_[a-z0-9]{16}$/, "must be an access request id");
export const GrantId = z.string().regex(/^[a-z0-9_:.-]{1,64}$/i, "must be a grant id");
export const ApproveForm = z.object({
  _csrf: z.string().optional(),
  ttl: z
    .string()
    .regex(/^\d{1,9}$/)
    .optional(),
});
export const DenyForm = z.object({ _csrf: z.string().optional(), reason: safeText(1000).optional() });
/** Where to go after signing in: a dashboard page of this server, nothing else (no open redirect). */
export const NextPage = z
  .string()
  .max(512)
  // Path segments without "." or ".." (a browser would resolve them out of /dashboard), a query
  // of printable ASCII only (a control or non-Latin-1 character cannot go into a Location header).
  .regex(
    /^\/dashboard(\/(?!\.\.?(?:\/|\?|$))[A-Za-z0-9._~-]+)*(\?[\x21-\x7e]*)?$/,
    "must be a dashboard page",
  )
  .refine((s) => !/[#\\]/.test(s), "must be a dashboard page");
export const TokenForm = z.object({ token: z.string().max(200), next: NextPage.optional() });
export const LinkForm = z.object({ code: z.string().max(64), next: NextPage.optional() });

const name = z
  .string()
  .max(128)
  .regex(/^[A-Za-z0-9._@:-]*$/, "letters, digits and . _ @ : -");
const day = z.string().regex(/^(\d{4}-\d{2}-\d{2})?$/, "a date such as 2026-05-01");
const digits = (max: number) =>
  z
    .string()
    .regex(new RegExp(`^\\d{1,${max}}$`))
    .optional();

export const Filters = z.object({
  action: z.string().max(256).optional(),
  approver: name.optional(),
  status: z.enum(["", ...REQUEST_STATUSES]).optional(),
  since: day.optional(),
  until: day.optional(),
  from: digits(9),
  to: digits(9),
  agent: name.optional(),
  project: name.optional(),
  type: z
    .string()
    .max(64)
    .regex(/^[a-z0-9_.*]*$/, "letters, digits, _ . and a trailing *")
    .optional(),
  state: z.enum(["active", "all", "expired", "revoked"]).optional(),
  event: z
    .string()
    .regex(/^evt_[a-z0-9]{16}$/)
    .optional(),
  grant: GrantId.optional(),
  before: digits(15),
  after: digits(15),
  code: z.string().max(64).optional(),
  /** A past moment (the policies page as it was then): an ISO 8601 time, UTC when it names no zone. */
  at: z
    .string()
    .regex(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?$/,
      "must be a time such as 2026-05-01T10:30 (UTC) or 2026-05-01T10:30:00+02:00",
    )
    .optional()
    .or(z.literal("")),
  // A link with a bad `next` still signs in, and goes home.
  next: NextPage.optional().catch(undefined),
});
export type Filters = z.infer<typeof Filters>;

/** An empty form field is no filter. */
export const blank = (s: string | undefined) => (s === "" ? undefined : s);
