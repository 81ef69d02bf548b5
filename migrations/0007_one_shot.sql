CREATE TABLE "single_use_grants" (
	"id" text PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"action" text NOT NULL,
	"resource" text NOT NULL,
	"call_hash" text NOT NULL,
	"idempotency_key" text,
	"approved_by" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"revoked_by" text
);
--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "kind" text DEFAULT 'grant' NOT NULL;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "call_hash" text;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "call_params" jsonb;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "call_operation" text;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "idempotency_key" text;--> statement-breakpoint
CREATE INDEX "single_use_grants_call_idx" ON "single_use_grants" USING btree ("project","agent","call_hash");