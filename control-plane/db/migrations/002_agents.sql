-- Agents and the commands the hub delivers to them. Delivery state lives here, not in
-- memory, so a command survives a control-plane restart and an agent disconnect.

CREATE TABLE agents (
  agent_id          uuid PRIMARY KEY REFERENCES identities(identity_id),
  project_id        uuid NOT NULL REFERENCES projects(project_id),
  box_public_key    text NOT NULL,          -- X25519: secrets in commands are sealed to it
  next_generation   bigint NOT NULL DEFAULT 1,
  agent_version     text,
  replica_id        text,                   -- the replica holding its socket, if any
  remote_address    text,
  connected_at      timestamptz,
  disconnected_at   timestamptz,
  last_heartbeat_at timestamptz
);

CREATE TABLE agent_commands (
  command_id   uuid PRIMARY KEY,
  agent_id     uuid NOT NULL REFERENCES agents(agent_id),
  generation   bigint NOT NULL,
  kind         text NOT NULL,
  payload      jsonb NOT NULL,              -- never a secret
  sealed       bytea,                       -- a secret sealed to the agent's box key
  state        text NOT NULL CHECK (state IN ('pending', 'delivered', 'accepted', 'succeeded', 'failed', 'rejected', 'expired')),
  issued_by    uuid,
  issued_at    timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  delivered_at timestamptz,
  deliveries   integer NOT NULL DEFAULT 0,
  completed_at timestamptz,
  result       jsonb,
  error        jsonb,
  UNIQUE (agent_id, generation)
);
CREATE INDEX agent_commands_open_idx ON agent_commands (agent_id, generation) WHERE state IN ('pending', 'delivered', 'accepted');
