ALTER TABLE "access_requests" ADD COLUMN "break_glass_by" text;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "break_glass_reviewed_by" text;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "break_glass_reviewed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "security_alerts" ADD COLUMN "request_id" text;