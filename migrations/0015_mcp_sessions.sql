-- MCP sessions (POST /mcp initialize): stored so that any instance serves any session; only the
-- hash of the session id is kept, with the token that opened it, when it expires and when it ended.
CREATE TABLE "mcp_sessions" (
	"id_hash" text PRIMARY KEY NOT NULL,
	"token_id" text NOT NULL,
	"agent" text NOT NULL,
	"project" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "mcp_sessions_expiry_idx" ON "mcp_sessions" USING btree ("expires_at");