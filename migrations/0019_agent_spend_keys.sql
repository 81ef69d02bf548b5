CREATE TABLE "agent_spend_keys" (
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"key" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	CONSTRAINT "agent_spend_keys_project_agent_key_pk" PRIMARY KEY("project","agent","key")
);
--> statement-breakpoint
CREATE INDEX "agent_spend_keys_at_idx" ON "agent_spend_keys" USING btree ("at");