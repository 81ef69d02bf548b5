ALTER TABLE "access_requests" ADD COLUMN "filed_event_id" text;--> statement-breakpoint
-- Requests filed before the row kept its filed event: found once here (approvals compare the row with it).
UPDATE "access_requests" AS r SET "filed_event_id" = e."event_id" FROM "audit_events" AS e
WHERE r."filed_event_id" IS NULL AND e."agent" = r."agent" AND e."type" = 'access_request.filed'
  AND e."details"->>'request_id' = r."id";
