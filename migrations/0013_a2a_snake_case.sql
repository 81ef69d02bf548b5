-- Every JSON object the Butler defines is snake_case, inside A2A objects too: a task's
-- metadata.butler ({request_id, project, agent}) and its grant artifact's data ({grant_id,
-- request_id, expires_at, revoked_at, approved_by, ...}). Tasks stored while these were camelCase
-- (requestId, grantId, ...) are rewritten, and so are the pushes still waiting in the outbox. Only
-- the Butler's own objects are touched: the protocol's fields (contextId, artifactId, mediaType,
-- ...) and what agents wrote keep their names. A grant artifact that still says "live" (written
-- before 0012, whose rewrite covered the grant_state column only) says "active", as everywhere
-- else. The helper functions are made in the schema the tables are in (no TEMP privilege needed)
-- and dropped below.
CREATE FUNCTION butler_0013_snake_keys(o jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN jsonb_typeof(o) = 'object' THEN coalesce(
    -- A snake_case key already there wins over the camelCase one that would take its name
    -- (jsonb keeps the last of equal keys: camelCase keys come first).
    (SELECT jsonb_object_agg(lower(regexp_replace(k, '([a-z0-9])([A-Z])', '\1_\2', 'g')), v
                             ORDER BY (k <> lower(k)) DESC, k)
     FROM jsonb_each(o) AS e(k, v)),
    '{}'::jsonb) ELSE o END
$$;--> statement-breakpoint
-- A grant artifact's data: snake_case keys, and the grant state's one word.
CREATE FUNCTION butler_0013_grant_data(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN butler_0013_snake_keys(d) ->> 'state' = 'live'
    THEN butler_0013_snake_keys(d) || '{"state": "active"}'::jsonb
    ELSE butler_0013_snake_keys(d) END
$$;--> statement-breakpoint
-- An artifact whose data parts' keys are snake_case.
CREATE FUNCTION butler_0013_snake_artifact(a jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN jsonb_typeof(a -> 'parts') = 'array' THEN a || jsonb_build_object('parts',
    (SELECT coalesce(jsonb_agg(CASE WHEN jsonb_typeof(p -> 'data') = 'object'
                               THEN p || jsonb_build_object('data', butler_0013_grant_data(p -> 'data'))
                               ELSE p END ORDER BY i), '[]'::jsonb)
     FROM jsonb_array_elements(a -> 'parts') WITH ORDINALITY AS e(p, i)))
  ELSE a END
$$;--> statement-breakpoint
-- A task (the protocol's Task JSON) with its metadata.butler and its artifacts rewritten.
CREATE FUNCTION butler_0013_snake_task(t jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT t
    || CASE WHEN jsonb_typeof(t -> 'metadata' -> 'butler') = 'object'
         THEN jsonb_build_object('metadata', (t -> 'metadata')
                || jsonb_build_object('butler', butler_0013_snake_keys(t -> 'metadata' -> 'butler')))
         ELSE '{}'::jsonb END
    || CASE WHEN jsonb_typeof(t -> 'artifacts') = 'array'
         THEN jsonb_build_object('artifacts',
                (SELECT coalesce(jsonb_agg(butler_0013_snake_artifact(a) ORDER BY i), '[]'::jsonb)
                 FROM jsonb_array_elements(t -> 'artifacts') WITH ORDINALITY AS e(a, i)))
         ELSE '{}'::jsonb END
$$;--> statement-breakpoint
UPDATE "a2a_tasks" SET "task" = butler_0013_snake_task("task") WHERE jsonb_typeof("task") = 'object';--> statement-breakpoint
-- Pushes not yet delivered carry the task (a `task` event) or its artifact (an `artifactUpdate`).
UPDATE "outbox" SET "payload" = jsonb_set("payload", '{event}', CASE
    WHEN jsonb_typeof("payload" -> 'event' -> 'task') = 'object'
      THEN ("payload" -> 'event') || jsonb_build_object('task', butler_0013_snake_task("payload" -> 'event' -> 'task'))
    WHEN jsonb_typeof("payload" -> 'event' -> 'artifactUpdate' -> 'artifact') = 'object'
      THEN ("payload" -> 'event') || jsonb_build_object('artifactUpdate', ("payload" -> 'event' -> 'artifactUpdate')
             || jsonb_build_object('artifact', butler_0013_snake_artifact("payload" -> 'event' -> 'artifactUpdate' -> 'artifact')))
    ELSE "payload" -> 'event' END)
WHERE "topic" = 'a2a.push' AND "delivered_at" IS NULL AND "failed_at" IS NULL
  AND jsonb_typeof("payload" -> 'event') = 'object';--> statement-breakpoint
DROP FUNCTION butler_0013_snake_task(jsonb);--> statement-breakpoint
DROP FUNCTION butler_0013_snake_artifact(jsonb);--> statement-breakpoint
DROP FUNCTION butler_0013_grant_data(jsonb);--> statement-breakpoint
DROP FUNCTION butler_0013_snake_keys(jsonb);
