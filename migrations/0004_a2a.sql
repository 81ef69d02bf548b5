CREATE TABLE "a2a_push_configs" (
	"id" text PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"url" text NOT NULL,
	"token" text DEFAULT '' NOT NULL,
	"auth_scheme" text,
	"auth_credentials" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "a2a_tasks" (
	"id" text PRIMARY KEY NOT NULL,
	"agent" text NOT NULL,
	"project" text NOT NULL,
	"context_id" text NOT NULL,
	"request_id" text,
	"state" text NOT NULL,
	"version" integer DEFAULT 1 NOT NULL,
	"task" jsonb NOT NULL,
	"grant_state" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "a2a_push_configs" ADD CONSTRAINT "a2a_push_configs_task_id_a2a_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."a2a_tasks"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "a2a_push_configs_task_idx" ON "a2a_push_configs" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "a2a_tasks_owner_idx" ON "a2a_tasks" USING btree ("project","agent","updated_at");--> statement-breakpoint
CREATE INDEX "a2a_tasks_request_idx" ON "a2a_tasks" USING btree ("request_id");