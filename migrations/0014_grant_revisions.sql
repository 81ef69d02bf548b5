-- An approval, revocation or expiry no longer stores the whole effective policy again: a grant
-- remembers the revision that added it and the one that removed it, and a revision stored by such
-- a change keeps no text of its own (yaml is null); its text is put together when read. Grants
-- from before this migration count as added before any such revision (0), and those already
-- revoked as removed before it (0). Revisions stored before keep their text.
ALTER TABLE "policy_revisions" ALTER COLUMN "yaml" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "added_revision" integer;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "removed_revision" integer;--> statement-breakpoint
UPDATE "grants" SET "added_revision" = 0, "removed_revision" = CASE WHEN "revoked_at" IS NOT NULL THEN 0 END;--> statement-breakpoint
CREATE INDEX "grants_unstamped_idx" ON "grants" USING btree ("project") WHERE "grants"."added_revision" IS NULL OR ("grants"."revoked_at" IS NOT NULL AND "grants"."removed_revision" IS NULL);
