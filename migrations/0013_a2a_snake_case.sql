-- Every JSON object the Butler defines is snake_case, inside A2A objects too: a task's
-- metadata.butler ({request_id, project, agent}) and its grant artifact's data ({grant_id,
-- request_id, expires_at, revoked_at, approved_by, ...}). Tasks stored while these were camelCase
-- (requestId, grantId, ...) are rewritten, and so are the pushes still waiting in the outbox. Only
-- the Butler's own objects are touched: the protocol's fields (contextId, artifactId, mediaType,
-- ...) and what agents wrote keep their names. Helper functions live in pg_temp, dropped below.
CREATE FUNCTION pg_temp.butler_snake_keys(o jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN jsonb_typeof(o) = 'object' THEN coalesce(
    (SELECT jsonb_object_agg(lower(regexp_replace(k, '([a-z0-9])([A-Z])', '\1_\2', 'g')), v)
     FROM jsonb_each(o) AS e(k, v)),
    '{}'::jsonb) ELSE o END
$$;--> statement-breakpoint
-- An artifact whose data parts' keys are snake_case.
CREATE FUNCTION pg_temp.butler_snake_artifact(a jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN jsonb_typeof(a -> 'parts') = 'array' THEN a || jsonb_build_object('parts',
    (SELECT coalesce(jsonb_agg(CASE WHEN jsonb_typeof(p -> 'data') = 'object'
                               THEN p || jsonb_build_object('data', pg_temp.butler_snake_keys(p -> 'data'))
                               ELSE p END ORDER BY i), '[]'::jsonb)
     FROM jsonb_array_elements(a -> 'parts') WITH ORDINALITY AS e(p, i)))
  ELSE a END
$$;--> statement-breakpoint
-- A task (the protocol's Task JSON) with its metadata.butler and its artifacts rewritten.
CREATE FUNCTION pg_temp.butler_snake_task(t jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT t
    || CASE WHEN jsonb_typeof(t -> 'metadata' -> 'butler') = 'object'
         THEN jsonb_build_object('metadata', (t -> 'metadata')
                || jsonb_build_object('butler', pg_temp.butler_snake_keys(t -> 'metadata' -> 'butler')))
         ELSE '{}'::jsonb END
    || CASE WHEN jsonb_typeof(t -> 'artifacts') = 'array'
         THEN jsonb_build_object('artifacts',
                (SELECT coalesce(jsonb_agg(pg_temp.butler_snake_artifact(a) ORDER BY i), '[]'::jsonb)
                 FROM jsonb_array_elements(t -> 'artifacts') WITH ORDINALITY AS e(a, i)))
         ELSE '{}'::jsonb END
$$;--> statement-breakpoint
UPDATE "a2a_tasks" SET "task" = pg_temp.butler_snake_task("task")
WHERE jsonb_typeof("task") = 'object' AND pg_temp.butler_snake_task("task") <> "task";--> statement-breakpoint
-- Pushes not yet delivered carry the task (a `task` event) or its artifact (an `artifactUpdate`).
UPDATE "outbox" SET "payload" = jsonb_set("payload", '{event}', CASE
    WHEN jsonb_typeof("payload" -> 'event' -> 'task') = 'object'
      THEN ("payload" -> 'event') || jsonb_build_object('task', pg_temp.butler_snake_task("payload" -> 'event' -> 'task'))
    WHEN jsonb_typeof("payload" -> 'event' -> 'artifactUpdate' -> 'artifact') = 'object'
      THEN ("payload" -> 'event') || jsonb_build_object('artifactUpdate', ("payload" -> 'event' -> 'artifactUpdate')
             || jsonb_build_object('artifact', pg_temp.butler_snake_artifact("payload" -> 'event' -> 'artifactUpdate' -> 'artifact')))
    ELSE "payload" -> 'event' END)
WHERE "topic" = 'a2a.push' AND "delivered_at" IS NULL AND "failed_at" IS NULL
  AND jsonb_typeof("payload" -> 'event') = 'object';--> statement-breakpoint
DROP FUNCTION pg_temp.butler_snake_task(jsonb);--> statement-breakpoint
DROP FUNCTION pg_temp.butler_snake_artifact(jsonb);--> statement-breakpoint
DROP FUNCTION pg_temp.butler_snake_keys(jsonb);
