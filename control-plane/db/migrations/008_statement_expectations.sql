-- A step's last statement can carry its own COMMIT (db/commit-with.ts): the checks the engine
-- made in JavaScript on what each write changed must then fail the statement itself, before
-- the COMMIT that follows it in the same round trip. sikker_expect(ok, what) raises SQLSTATE
-- SK001 with `what` (the write's name, no data) as its message when ok is not true.
CREATE FUNCTION sikker_expect(ok boolean, what text) RETURNS boolean
  LANGUAGE plpgsql AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION USING ERRCODE = 'SK001', MESSAGE = what;
  END IF;
  RETURN true;
END
$$;
