CREATE TABLE "spend" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"currency" text NOT NULL,
	"amount" bigint NOT NULL,
	"session" text,
	"event_id" text NOT NULL,
	"idempotency_key" text,
	"at" timestamp with time zone NOT NULL,
	"released_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "spend_project_idx" ON "spend" USING btree ("project","currency","at");