-- The vault's state of record. Every secret-bearing column holds an AEAD envelope
-- (see shared/crypto/aead.ts); nothing here is usable without the root key.

CREATE TABLE vault_state (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  root_check     bytea NOT NULL,          -- HMAC under a key derived from the root key; proves a reconstruction
  share_hashes   bytea[] NOT NULL,        -- SHA-256 of each share: a stranger's share is refused alone, never poisons the set
  share_count    integer NOT NULL CHECK (share_count BETWEEN 1 AND 16),
  threshold      integer NOT NULL CHECK (threshold BETWEEN 1 AND 16),
  initialised_at timestamptz NOT NULL DEFAULT now()
);

-- The control plane's own Ed25519 key: signs audit checkpoints (and later agent commands).
CREATE TABLE server_keys (
  key_version        integer PRIMARY KEY,
  public_key         text NOT NULL,
  wrapped_private_key bytea NOT NULL,     -- under the root key
  created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
  project_id          uuid PRIMARY KEY,
  name                text NOT NULL UNIQUE,
  current_key_version integer NOT NULL,
  created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_keys (
  project_id  uuid NOT NULL REFERENCES projects(project_id),
  key_version integer NOT NULL,
  wrapped_key bytea NOT NULL,             -- under the root key, bound to (project, version)
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, key_version)
);

CREATE TABLE secrets (
  secret_id        uuid PRIMARY KEY,
  project_id       uuid NOT NULL REFERENCES projects(project_id),
  name             text NOT NULL,
  wrapped_data_key bytea NOT NULL,        -- under the project key of version data_key_version
  data_key_version integer NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, name)
);
CREATE INDEX secrets_rewrap_idx ON secrets (project_id, data_key_version);

CREATE TABLE secret_versions (
  secret_id  uuid NOT NULL REFERENCES secrets(secret_id),
  version    integer NOT NULL CHECK (version >= 1),
  ciphertext bytea NOT NULL,              -- under the secret's data key, bound to (project, secret, version)
  label      text CHECK (label IN ('current', 'previous', 'pending')),
  state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked')),
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (secret_id, version)
);
CREATE UNIQUE INDEX secret_versions_label_idx ON secret_versions (secret_id, label) WHERE label IS NOT NULL;

CREATE TABLE identities (
  identity_id   uuid PRIMARY KEY,
  name          text NOT NULL,
  public_key    text NOT NULL UNIQUE,
  allowed_cidrs cidr[] NOT NULL DEFAULT '{}',
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- project_id NULL is a grant over the whole control plane (only 'admin', given at init).
CREATE TABLE grants (
  identity_id uuid NOT NULL REFERENCES identities(identity_id),
  project_id  uuid REFERENCES projects(project_id),
  role        text NOT NULL CHECK (role IN ('admin', 'dba', 'oncall', 'reader', 'agent')),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX grants_unique_idx ON grants (identity_id, COALESCE(project_id, '00000000-0000-0000-0000-000000000000'::uuid), role);

-- Readers and agents see only the secrets granted to them one by one.
CREATE TABLE secret_grants (
  identity_id uuid NOT NULL REFERENCES identities(identity_id),
  secret_id   uuid NOT NULL REFERENCES secrets(secret_id),
  PRIMARY KEY (identity_id, secret_id)
);

CREATE TABLE join_tokens (
  token_hash    bytea PRIMARY KEY,        -- SHA-256 of the token; the token itself is never stored
  project_id    uuid NOT NULL REFERENCES projects(project_id),
  role          text NOT NULL,
  name          text,
  allowed_cidrs cidr[] NOT NULL DEFAULT '{}',
  created_by    uuid NOT NULL,
  expires_at    timestamptz NOT NULL,
  used_at       timestamptz,
  used_by       uuid
);

CREATE TABLE audit_records (
  seq           bigint PRIMARY KEY,
  occurred_at   timestamptz NOT NULL,
  identity_id   uuid,
  source_ip     text,
  action        text NOT NULL,
  project_id    uuid,
  secret_id     uuid,
  secret_version integer,
  outcome       text NOT NULL,
  detail        jsonb NOT NULL DEFAULT '{}',
  prev_hash     bytea NOT NULL,
  record_hash   bytea NOT NULL
);
CREATE INDEX audit_identity_idx ON audit_records (identity_id, seq);
CREATE INDEX audit_secret_idx ON audit_records (secret_id, secret_version, seq);
CREATE INDEX audit_time_idx ON audit_records (occurred_at);

-- The head of the hash chain. Each batch of records locks this one row once.
CREATE TABLE audit_chain_head (
  singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  seq             bigint NOT NULL,
  record_hash     bytea NOT NULL,
  checkpoint_seq  bigint NOT NULL DEFAULT 0,
  checkpoint_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
);
INSERT INTO audit_chain_head (seq, record_hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Signed by the server key: an attacker with write access cannot recompute these.
-- Each signature also covers the previous checkpoint, so removing one breaks the next.
CREATE TABLE audit_checkpoints (
  seq                bigint PRIMARY KEY,
  record_hash        bytea NOT NULL,
  prev_seq           bigint NOT NULL,
  prev_hash          bytea NOT NULL,
  server_key_version integer NOT NULL,
  signature          bytea NOT NULL,
  signed_at          timestamptz NOT NULL DEFAULT now()
);
