-- An `every N` schedule steps on from the time its last rotation was due before window and
-- jitter moved it (its base), not from when that rotation ran: lateness and jitter no longer
-- add up from one rotation to the next (schedule.ts nextRun). NULL for a policy whose next run
-- was computed before this column existed: its next_run_at stands in once.
ALTER TABLE policies ADD COLUMN next_base_at timestamptz;
