CREATE TABLE "access_requests" (
	"id" text PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"token_id" text NOT NULL,
	"status" text NOT NULL,
	"action" text NOT NULL,
	"resource" text NOT NULL,
	"branch" text,
	"reason" text NOT NULL,
	"denial_event_id" text,
	"requested_ttl_seconds" integer NOT NULL,
	"risk_tier" text NOT NULL,
	"approvals_required" integer NOT NULL,
	"proposal_diff" text NOT NULL,
	"proposal_base_revision" integer NOT NULL,
	"proposal_hash" text NOT NULL,
	"dedupe_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"decided_at" timestamp with time zone,
	"decided_by" text,
	"decided_via" text,
	"decision_reason" text,
	"granted_ttl_seconds" integer
);
--> statement-breakpoint
CREATE TABLE "approver_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"approver" text NOT NULL,
	"token_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "grants" (
	"id" text PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"action" text NOT NULL,
	"resource" text NOT NULL,
	"branch" text,
	"approved_by" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revoked_by" text,
	"expiry_recorded_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"topic" text NOT NULL,
	"key" text NOT NULL,
	"payload" jsonb NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone,
	"failed_at" timestamp with time zone,
	"last_error" text
);
--> statement-breakpoint
CREATE TABLE "posted_cards" (
	"request_id" text NOT NULL,
	"channel" text NOT NULL,
	"chat_id" text NOT NULL,
	"message_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "request_reviews" (
	"request_id" text NOT NULL,
	"approver" text NOT NULL,
	"verdict" text NOT NULL,
	"channel" text NOT NULL,
	"ttl_seconds" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "policy_revisions" ADD COLUMN "baseline" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "policy_revisions" ADD COLUMN "effective_hash" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "policy_revisions" ADD COLUMN "cause" text;--> statement-breakpoint
CREATE UNIQUE INDEX "access_requests_pending_uq" ON "access_requests" USING btree ("dedupe_key") WHERE "access_requests"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "access_requests_status_idx" ON "access_requests" USING btree ("status","expires_at");--> statement-breakpoint
CREATE INDEX "access_requests_agent_idx" ON "access_requests" USING btree ("project","agent","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "approver_tokens_hash_uq" ON "approver_tokens" USING btree ("token_hash");--> statement-breakpoint
CREATE INDEX "grants_project_idx" ON "grants" USING btree ("project","expires_at");--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "outbox" USING btree ("key","id") WHERE "outbox"."delivered_at" IS NULL AND "outbox"."failed_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "posted_cards_uq" ON "posted_cards" USING btree ("request_id","channel","chat_id");--> statement-breakpoint
CREATE UNIQUE INDEX "request_reviews_uq" ON "request_reviews" USING btree ("request_id","approver");--> statement-breakpoint
-- Revisions stored before this migration had no grants: their effective policy is their baseline.
UPDATE policy_revisions SET baseline = yaml, effective_hash = content_hash WHERE baseline = '';
