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
