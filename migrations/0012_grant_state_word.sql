-- One word per grant state: A2A tasks said "live" where the API, the CLI and the dashboard say "active".
UPDATE "a2a_tasks" SET "grant_state" = 'active' WHERE "grant_state" = 'live';
