CREATE TABLE "webhook_events" (
	"provider" text NOT NULL,
	"event_key" text NOT NULL,
	"received_event_id" text,
	"received_at" timestamp with time zone NOT NULL,
	"reactions_done_at" timestamp with time zone,
	"claimed_until" timestamp with time zone NOT NULL,
	CONSTRAINT "webhook_events_pk" PRIMARY KEY("provider","event_key")
);
