-- Leak response: keyed fingerprints per version (a leaked value is found without
-- decrypting anything), leak records, and leaked versions marked in the vault.

-- Per-project HMAC key for fingerprints, wrapped under the root key (stable across master-key rotations).
-- A table of its own: created lazily with INSERT … ON CONFLICT, it never takes a lock on the
-- project row, which writers hold FOR SHARE (an UPDATE there would deadlock two of them).
CREATE TABLE project_fingerprint_keys (
  project_id  uuid PRIMARY KEY REFERENCES projects(project_id),
  wrapped_key bytea NOT NULL
);

-- HMAC-SHA256(fingerprint key, value); NULL for versions written before fingerprints existed (backfilled).
ALTER TABLE secret_versions ADD COLUMN fingerprint bytea;
ALTER TABLE secret_versions ADD COLUMN leaked_at timestamptz;
CREATE INDEX secret_versions_fingerprint_idx ON secret_versions (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX secret_versions_unfingerprinted_idx ON secret_versions (secret_id, version) WHERE fingerprint IS NULL;

CREATE TABLE leaks (
  leak_id        uuid PRIMARY KEY,
  project_id     uuid NOT NULL REFERENCES projects(project_id),
  secret_id      uuid NOT NULL REFERENCES secrets(secret_id),
  target_id      uuid REFERENCES targets(target_id),   -- NULL: the secret is not rotated by SikkerKey
  leaked_version integer NOT NULL,
  found_by       text NOT NULL CHECK (found_by IN ('name', 'value')),
  kill_sessions  boolean NOT NULL DEFAULT false,
  run_id         uuid REFERENCES rotation_runs(run_id),
  -- open: being handled; neutralised: the leaked value is refused; exposed: could not be neutralised (see reason)
  state          text NOT NULL CHECK (state IN ('open', 'neutralised', 'exposed')),
  reason         text,
  reported_by    uuid,
  reported_at    timestamptz NOT NULL DEFAULT now(),
  neutralised_at timestamptz
);
CREATE INDEX leaks_open_idx ON leaks (project_id) WHERE state <> 'neutralised';
