CREATE TABLE "agent_drift" (
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"dimension" text NOT NULL,
	"level" text NOT NULL,
	"computed_at" timestamp with time zone NOT NULL,
	"numbers" jsonb NOT NULL,
	CONSTRAINT "agent_drift_project_agent_dimension_pk" PRIMARY KEY("project","agent","dimension")
);
--> statement-breakpoint
CREATE TABLE "agent_pacts" (
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"revision" integer NOT NULL,
	"pact" jsonb,
	"set_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "agent_pacts_project_agent_revision_pk" PRIMARY KEY("project","agent","revision")
);
--> statement-breakpoint
CREATE TABLE "agent_trust" (
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"score" integer NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "agent_trust_project_agent_pk" PRIMARY KEY("project","agent")
);
--> statement-breakpoint
CREATE TABLE "mcp_tool_pins" (
	"server" text NOT NULL,
	"tool" text NOT NULL,
	"pinned_hash" text NOT NULL,
	"pinned" jsonb NOT NULL,
	"pinned_at" timestamp with time zone NOT NULL,
	"pinned_by" text NOT NULL,
	"changed_hash" text,
	"changed" jsonb,
	"changed_at" timestamp with time zone,
	"changed_seen" jsonb DEFAULT '[]'::jsonb NOT NULL,
	CONSTRAINT "mcp_tool_pins_server_tool_pk" PRIMARY KEY("server","tool")
);
--> statement-breakpoint
CREATE TABLE "rate_counts" (
	"key" text NOT NULL,
	"window_start" bigint NOT NULL,
	"count" integer NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "rate_counts_key_window_start_pk" PRIMARY KEY("key","window_start")
);
--> statement-breakpoint
CREATE TABLE "usage_counts" (
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"dimension" text NOT NULL,
	"value" text NOT NULL,
	"bucket_start" bigint NOT NULL,
	"count" integer NOT NULL,
	CONSTRAINT "usage_counts_project_agent_dimension_value_bucket_start_pk" PRIMARY KEY("project","agent","dimension","value","bucket_start")
);
--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "call_params_shown" jsonb;--> statement-breakpoint
CREATE INDEX "rate_counts_expiry_idx" ON "rate_counts" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "usage_counts_bucket_idx" ON "usage_counts" USING btree ("bucket_start");