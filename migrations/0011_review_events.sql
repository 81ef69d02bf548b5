ALTER TABLE "request_reviews" ADD COLUMN "event_id" text;--> statement-breakpoint
-- Approvals recorded before reviews kept their event: found once here (a final approval counts them by it).
UPDATE "request_reviews" AS v SET "event_id" = e."event_id" FROM "audit_events" AS e
WHERE v."event_id" IS NULL AND v."verdict" = 'approve' AND e."type" = 'access_request.approval_recorded'
  AND e."details"->>'request_id' = v."request_id" AND e."details"->>'approver' = v."approver";
