ALTER TABLE "access_requests" ADD COLUMN "reminders_sent" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "access_requests" ADD COLUMN "escalated_at" timestamp with time zone;--> statement-breakpoint
UPDATE "access_requests" SET "reminders_sent" = 1 WHERE "reminded_at" IS NOT NULL;