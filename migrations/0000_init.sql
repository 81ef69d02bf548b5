CREATE TABLE "agent_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"agent" text NOT NULL,
	"project" text NOT NULL,
	"token_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"seq" bigint PRIMARY KEY NOT NULL,
	"event_id" text NOT NULL,
	"ts" timestamp (3) with time zone NOT NULL,
	"type" text NOT NULL,
	"agent" text,
	"project" text,
	"action" text,
	"resource" text,
	"decision" text,
	"reason" text,
	"http_status" integer,
	"details" jsonb NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_head" (
	"id" smallint PRIMARY KEY NOT NULL,
	"seq" bigint NOT NULL,
	"hash" text NOT NULL,
	CONSTRAINT "audit_head_single_row" CHECK ("audit_head"."id" = 1)
);
--> statement-breakpoint
CREATE TABLE "policy_revisions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"revision" integer NOT NULL,
	"content_hash" text NOT NULL,
	"source" text NOT NULL,
	"yaml" text NOT NULL,
	"retired" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "agent_tokens_token_hash_uq" ON "agent_tokens" USING btree ("token_hash");--> statement-breakpoint
CREATE INDEX "agent_tokens_agent_idx" ON "agent_tokens" USING btree ("project","agent");--> statement-breakpoint
CREATE UNIQUE INDEX "audit_events_event_id_uq" ON "audit_events" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "audit_events_agent_seq_idx" ON "audit_events" USING btree ("agent","seq");--> statement-breakpoint
CREATE UNIQUE INDEX "policy_revisions_project_revision_uq" ON "policy_revisions" USING btree ("project","revision");