-- A rotation's commit moves a secret's labels in one statement (previous → none, current →
-- previous, pending → current). A unique index is checked row by row, so it would trip over that
-- statement's own intermediate states; a deferrable constraint is checked at the end of each
-- statement instead (INITIALLY IMMEDIATE: still within the statement, never at commit). The
-- guarantee is unchanged: at most one version of a secret holds each label.
ALTER TABLE secret_versions ADD CONSTRAINT secret_versions_one_per_label
  EXCLUDE USING btree (secret_id WITH =, label WITH =) WHERE (label IS NOT NULL) DEFERRABLE INITIALLY IMMEDIATE;
DROP INDEX secret_versions_label_idx;
