CREATE TABLE "agent_spend" (
	"project" text NOT NULL,
	"agent" text NOT NULL,
	"month" text NOT NULL,
	"currency" text NOT NULL,
	"amount" bigint NOT NULL,
	CONSTRAINT "agent_spend_project_agent_month_currency_pk" PRIMARY KEY("project","agent","month","currency")
);
