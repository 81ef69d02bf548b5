ALTER TABLE "access_requests" ADD COLUMN "resource_glob" text;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "blast_radius" jsonb;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "resource_glob" text;