-- The audit log is append-only: the database itself refuses to change or remove an event.
-- (A superuser can still disable the trigger; the hash chain is what makes that detectable.)
CREATE FUNCTION butler_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER audit_events_append_only
  BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION butler_audit_refuse_change();
--> statement-breakpoint
CREATE TRIGGER audit_events_no_truncate
  BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION butler_audit_refuse_change();
--> statement-breakpoint
CREATE TRIGGER audit_head_keep
  BEFORE DELETE ON audit_head
  FOR EACH ROW EXECUTE FUNCTION butler_audit_refuse_change();
--> statement-breakpoint
CREATE TRIGGER audit_head_no_truncate
  BEFORE TRUNCATE ON audit_head
  FOR EACH STATEMENT EXECUTE FUNCTION butler_audit_refuse_change();
--> statement-breakpoint
-- The chain starts at sequence 0 with the all-zero hash (see docs/audit.md).
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, repeat('0', 64));
