-- Rotation targets, their policies, and rotation runs. PostgreSQL is the state of
-- record for schedules and runs; Redis (BullMQ) only drives the sweep that acts on it.

-- The database user a version's password belongs to (the alternate strategy has two).
ALTER TABLE secret_versions ADD COLUMN db_user text;

CREATE TABLE targets (
  target_id       uuid PRIMARY KEY,
  project_id      uuid NOT NULL REFERENCES projects(project_id),
  name            text NOT NULL,
  secret_id       uuid NOT NULL UNIQUE REFERENCES secrets(secret_id),
  agent_id        uuid NOT NULL REFERENCES agents(agent_id),
  spec            jsonb NOT NULL,            -- TargetSpec: engine, host, port, user, tls, privilege; never a secret
  alternate_user  text,                      -- the partner account of the alternate strategy
  sinks           text[] NOT NULL DEFAULT '{}',
  preflight_ok    boolean NOT NULL DEFAULT false,
  preflight       jsonb,                     -- the last preflight report
  preflight_at    timestamptz,
  preflight_command_id uuid,                 -- the preflight the agent is running now
  created_by      uuid,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (project_id, name)
);

CREATE TABLE policies (
  target_id    uuid PRIMARY KEY REFERENCES targets(target_id),
  spec         jsonb NOT NULL,               -- schedule, time zone, window, jitter, strategy, grace, rules, retries
  state        text NOT NULL CHECK (state IN ('active', 'paused')),
  next_run_at  timestamptz,
  last_run_at  timestamptz,
  updated_by   uuid,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX policies_due_idx ON policies (next_run_at) WHERE state = 'active';

CREATE TABLE rotation_runs (
  run_id            uuid PRIMARY KEY,
  target_id         uuid NOT NULL REFERENCES targets(target_id),
  project_id        uuid NOT NULL REFERENCES projects(project_id),
  trigger           text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'leak')),
  scheduled_for     timestamptz,             -- when a scheduled run was due (lateness = created_at - scheduled_for)
  state             text NOT NULL CHECK (state IN ('created', 'pending', 'dispatched', 'uncertain', 'committed', 'revoking', 'done', 'failed', 'parked')),
  -- True while the run owns its target: from creation until nothing it changed can still be in flight.
  holds_target      boolean NOT NULL DEFAULT true,
  strategy          text NOT NULL CHECK (strategy IN ('replace', 'dual', 'alternate')),
  grace_seconds     integer NOT NULL,
  db_user           text NOT NULL,            -- the user receiving the new password
  attempt           integer NOT NULL DEFAULT 1,
  max_attempts      integer NOT NULL,
  failures          integer NOT NULL DEFAULT 0, -- consecutive failed tries of the current step (backoff)
  pending_version   integer,
  previous_version  integer,                  -- the current version when the run started
  command_id        uuid,                     -- the agent command this run waits for
  next_action_at    timestamptz,              -- when the sweep must look at this run again
  error_code        text,
  error_message     text,
  requested_by      uuid,
  created_at        timestamptz NOT NULL DEFAULT now(),
  committed_at      timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
-- At most one run in flight per target: a manual and a scheduled trigger at the same instant make one run.
CREATE UNIQUE INDEX rotation_runs_one_open_idx ON rotation_runs (target_id) WHERE holds_target;
CREATE INDEX rotation_runs_action_idx ON rotation_runs (next_action_at) WHERE holds_target;
CREATE INDEX rotation_runs_target_idx ON rotation_runs (target_id, created_at DESC);
CREATE INDEX rotation_runs_command_idx ON rotation_runs (command_id) WHERE holds_target;

CREATE TABLE rotation_steps (
  run_id  uuid NOT NULL REFERENCES rotation_runs(run_id),
  seq     integer NOT NULL,
  step    text NOT NULL,
  at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  detail  jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (run_id, seq)
);
