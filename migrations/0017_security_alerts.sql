CREATE TABLE "security_alerts" (
	"id" text PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"kind" text NOT NULL,
	"title" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"acknowledged_by" text,
	"acknowledged_at" timestamp with time zone,
	"suspended_by" text,
	"suspended_at" timestamp with time zone,
	"trust_raised_by" text,
	"trust_raised_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "security_alerts_agent_idx" ON "security_alerts" USING btree ("project","agent","created_at");