-- One word per grant state: A2A tasks said "live" where the API, the CLI and the dashboard say "active".
UPDATE "a2a_tasks" SET "grant_state" = 'active' WHERE "grant_state" = 'live';--> statement-breakpoint
-- The stored task as agents read it (its grant artifact's state) says the same. jsonb prints keys
-- unescaped, so the pattern matches only a "state" key, never agent-written text inside a string.
UPDATE "a2a_tasks" SET "task" = replace("task"::text, '"state": "live"', '"state": "active"')::jsonb
WHERE "task"::text LIKE '%"state": "live"%';
