-- Every rotation commit closes the leaks its run answers (UPDATE leaks … WHERE run_id = $1),
-- and a leak run's commit reads its leak the same way: without this index each of those
-- scanned every leak ever reported.
CREATE INDEX leaks_run_idx ON leaks (run_id) WHERE run_id IS NOT NULL;
