import t from 'tap';
import {
  isInsideWindow,
  nextRun,
  startOfWindowAfter,
  validateSchedule,
  windowOccurrenceStart,
  zonedParts,
  type SchedulePolicy,
  type ScheduleWindow,
} from '../../control-plane/rotation/schedule.js';

/** The run time alone, as most of these tests want it. */
const nextRunAt = (...args: Parameters<typeof nextRun>): Date => nextRun(...args).at;
const zero = (): number => 0;
const almostOne = (): number => 0.999999;
const at = (iso: string): Date => new Date(iso);
const iso = (date: Date | null): string | null => (date === null ? null : date.toISOString());

function policy(overrides: Partial<SchedulePolicy> = {}): SchedulePolicy {
  return { schedule: { kind: 'every', seconds: 3600 }, timeZone: 'UTC', jitterSeconds: 0, alternate: false, ...overrides };
}

function cron(expression: string, timeZone: string): SchedulePolicy {
  return policy({ schedule: { kind: 'cron', expression }, timeZone });
}

/** Deterministic [0, 1) numbers for the property test (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const evening: ScheduleWindow = { start: '22:00', end: '02:00' };

t.test('schedule – every N seconds adds N to from', async (t) => {
  t.equal(iso(nextRunAt(policy(), at('2026-01-01T00:00:00Z'), zero)), '2026-01-01T01:00:00.000Z');
  const jittered = policy({ jitterSeconds: 600 });
  t.equal(iso(nextRunAt(jittered, at('2026-01-01T00:00:00Z'), () => 0.5)), '2026-01-01T01:05:00.000Z', 'half of 600 s jitter');
});

t.test('schedule – every N steps on from the previous base: lateness and jitter do not add up', async (t) => {
  const p = policy({ schedule: { kind: 'every', seconds: 86_400 }, jitterSeconds: 3600 });
  const rand = seeded(7);
  const start = nextRun(p, at('2026-01-01T03:00:00Z'), rand);
  t.equal(iso(start.base), '2026-01-02T03:00:00.000Z', 'the first base: one step from now');
  let { at: due, base } = start;
  for (let day = 1; day <= 60; day += 1) {
    // the scheduler claims the run some time after it was due, and computes the next
    const claimedAt = new Date(due.getTime() + 250 + Math.floor(rand() * 2000));
    const next = nextRun(p, claimedAt, rand, claimedAt, base);
    t.equal(next.base.getTime() - base.getTime(), 86_400_000, `day ${day}: the base moved by exactly one step`);
    const jitter = next.at.getTime() - next.base.getTime();
    t.ok(jitter >= 0 && jitter < 3_600_000, `day ${day}: the run is its base plus at most the jitter`);
    ({ at: due, base } = next);
  }
  t.equal(iso(base), '2026-03-03T03:00:00.000Z', 'after 60 runs still 03:00: no drift');
  // without a base (the old behaviour), the same runs drift by their jitter and lateness
  let drifting = start.at;
  for (let day = 1; day <= 60; day += 1) drifting = nextRunAt(p, new Date(drifting.getTime() + 250), () => 0.5);
  t.ok(drifting.getTime() - at('2026-03-03T03:00:00Z').getTime() > 29 * 3_600_000, 'from `from`, half the jitter a day adds up to more than a day in two months');
});

t.test('schedule – every N after a long stop: the next step of the grid after now, no catch-up runs', async (t) => {
  const p = policy({ schedule: { kind: 'every', seconds: 3600 } });
  const next = nextRun(p, at('2026-01-01T10:20:00Z'), zero, undefined, at('2026-01-01T03:00:00Z'));
  t.equal(iso(next.base), '2026-01-01T11:00:00.000Z', 'seven steps missed are skipped; the grid is kept');
  t.equal(iso(next.at), '2026-01-01T11:00:00.000Z');
  const exactly = nextRun(p, at('2026-01-01T11:00:00Z'), zero, undefined, at('2026-01-01T03:00:00Z'));
  t.equal(iso(exactly.base), '2026-01-01T12:00:00.000Z', 'strictly after from');
  const ahead = nextRun(p, at('2026-01-01T10:20:00Z'), zero, undefined, at('2026-01-01T12:00:00Z'));
  t.equal(iso(ahead.base), '2026-01-01T11:20:00.000Z', 'a base after from is not a grid to follow: one step from from');
  const cronNext = nextRun(cron('0 4 * * *', 'UTC'), at('2026-01-01T10:20:00Z'), zero, undefined, at('2026-01-01T03:17:00Z'));
  t.equal(iso(cronNext.base), '2026-01-02T04:00:00.000Z', 'cron keeps its own grid');
});

t.test('schedule – every N with a window: the base stays on its grid, the run moves into the window', async (t) => {
  const p = policy({ schedule: { kind: 'every', seconds: 6 * 3600 }, window: { start: '02:00', end: '04:00' } });
  const first = nextRun(p, at('2026-01-01T02:30:00Z'), zero, undefined, at('2026-01-01T00:00:00Z'));
  t.equal(iso(first.base), '2026-01-01T06:00:00.000Z');
  t.equal(iso(first.at), '2026-01-02T02:00:00.000Z', 'moved to the next opening');
  const second = nextRun(p, at('2026-01-02T02:00:01Z'), zero, undefined, first.base);
  t.equal(iso(second.base), '2026-01-02T06:00:00.000Z', 'the grid point after the run, not after the moved run');
  t.equal(iso(second.at), '2026-01-03T02:00:00.000Z');
});

t.test('schedule – cron in Europe/Oslo across the March 2026 DST change', async (t) => {
  const p = cron('0 3 * * *', 'Europe/Oslo');
  t.equal(iso(nextRunAt(p, at('2026-03-27T12:00:00Z'), zero)), '2026-03-28T02:00:00.000Z', '03:00 CET is 02:00Z');
  t.equal(iso(nextRunAt(p, at('2026-03-28T12:00:00Z'), zero)), '2026-03-29T01:00:00.000Z', '03:00 CEST is 01:00Z');
});

t.test('schedule – cron in Europe/Oslo across the October 2026 DST change', async (t) => {
  const p = cron('0 3 * * *', 'Europe/Oslo');
  t.equal(iso(nextRunAt(p, at('2026-10-23T12:00:00Z'), zero)), '2026-10-24T01:00:00.000Z', '03:00 CEST is 01:00Z');
  t.equal(iso(nextRunAt(p, at('2026-10-24T12:00:00Z'), zero)), '2026-10-25T02:00:00.000Z', '03:00 CET is 02:00Z');
});

t.test('schedule – cron time in a skipped hour still runs that day', async (t) => {
  const result = nextRunAt(cron('30 2 * * *', 'Europe/Oslo'), at('2026-03-28T12:00:00Z'), zero);
  t.ok(result >= at('2026-03-29T01:00:00Z') && result < at('2026-03-29T22:00:00Z'), `ran at ${iso(result)}`);
});

t.test('schedule – the same cron differs between America/New_York and UTC', async (t) => {
  const from = at('2026-01-10T00:00:00Z');
  t.equal(iso(nextRunAt(cron('0 3 * * *', 'UTC'), from, zero)), '2026-01-10T03:00:00.000Z');
  t.equal(iso(nextRunAt(cron('0 3 * * *', 'America/New_York'), from, zero)), '2026-01-10T08:00:00.000Z');
});

t.test('schedule – from exactly at a cron instant gives the next one', async (t) => {
  t.equal(iso(nextRunAt(cron('0 3 * * *', 'UTC'), at('2026-01-10T03:00:00Z'), zero)), '2026-01-11T03:00:00.000Z');
});

t.test('schedule – window over midnight: inside, outside and occurrence start', async (t) => {
  t.ok(isInsideWindow(at('2026-01-01T22:00:00Z'), evening, 'UTC'), 'start is inclusive');
  t.ok(isInsideWindow(at('2026-01-01T23:30:00Z'), evening, 'UTC'));
  t.ok(isInsideWindow(at('2026-01-02T01:59:59Z'), evening, 'UTC'));
  t.notOk(isInsideWindow(at('2026-01-02T02:00:00Z'), evening, 'UTC'), 'end is exclusive');
  t.notOk(isInsideWindow(at('2026-01-01T21:59:59Z'), evening, 'UTC'));
  t.equal(iso(windowOccurrenceStart(at('2026-01-02T01:00:00Z'), evening, 'UTC')), '2026-01-01T22:00:00.000Z', 'after midnight belongs to the evening before');
  t.equal(iso(windowOccurrenceStart(at('2026-01-01T23:00:00Z'), evening, 'UTC')), '2026-01-01T22:00:00.000Z');
  t.equal(windowOccurrenceStart(at('2026-01-01T12:00:00Z'), evening, 'UTC'), null, 'null outside');
  t.ok(isInsideWindow(at('2026-01-01T21:30:00Z'), evening, 'Europe/Oslo'), '22:30 in Oslo');
});

t.test('schedule – a base outside the window moves to the next window start', async (t) => {
  const p = policy({ timeZone: 'Europe/Oslo', window: evening });
  t.equal(iso(nextRunAt(p, at('2026-01-15T12:00:00Z'), zero)), '2026-01-15T21:00:00.000Z', '14:00 local moves to 22:00 local');
  t.equal(iso(nextRunAt(p, at('2026-01-15T21:30:00Z'), zero)), '2026-01-15T22:30:00.000Z', 'a base inside stays');
  t.equal(iso(startOfWindowAfter(at('2026-01-15T12:00:00Z'), evening, 'Europe/Oslo')), '2026-01-15T21:00:00.000Z');
});

t.test('schedule – jitter stays inside the window', async (t) => {
  const p = policy({ timeZone: 'Europe/Oslo', window: evening, jitterSeconds: 7200 });
  const late = nextRunAt(p, at('2026-01-15T22:30:00Z'), almostOne); // base 00:30 local, 1.5 h left
  t.ok(late > at('2026-01-15T23:30:00Z') && late < at('2026-01-16T01:00:00Z'), `before 02:00 local: ${iso(late)}`);
  t.ok(isInsideWindow(late, evening, 'Europe/Oslo'));
  const early = nextRunAt(p, at('2026-01-15T12:00:00Z'), almostOne); // base moved to 22:00 local
  t.ok(early > at('2026-01-15T22:59:59Z') && early < at('2026-01-15T23:00:00Z'), `full 2 h jitter: ${iso(early)}`);
});

t.test('schedule – alternate moves a run in the last run’s window occurrence to the next one', async (t) => {
  const p = policy({ timeZone: 'Europe/Oslo', window: evening, alternate: true });
  const from = at('2026-01-15T21:30:00Z'); // base 22:30Z = 23:30 local
  t.equal(iso(nextRunAt(p, from, zero, at('2026-01-15T21:10:00Z'))), '2026-01-16T21:00:00.000Z', 'same evening → next evening');
  t.equal(iso(nextRunAt(p, from, zero, at('2026-01-14T21:10:00Z'))), '2026-01-15T22:30:00.000Z', 'previous evening → no move');
  t.equal(iso(nextRunAt(p, from, zero)), '2026-01-15T22:30:00.000Z', 'no last run → no move');
  const afterMidnight = at('2026-01-15T22:30:00Z'); // base 00:30 local, still the evening of the 15th
  t.equal(iso(nextRunAt(p, afterMidnight, zero, at('2026-01-15T21:10:00Z'))), '2026-01-16T21:00:00.000Z', 'over midnight is one occurrence');
  const jittered = policy({ timeZone: 'Europe/Oslo', window: evening, alternate: true, jitterSeconds: 3600 });
  t.equal(iso(nextRunAt(jittered, from, () => 0.5, at('2026-01-15T21:10:00Z'))), '2026-01-16T21:30:00.000Z', 'jittered again inside the next one');
});

t.test('schedule – a window start in the skipped hour opens at the transition', async (t) => {
  const window: ScheduleWindow = { start: '02:30', end: '04:00' };
  t.equal(iso(startOfWindowAfter(at('2026-03-28T23:00:00Z'), window, 'Europe/Oslo')), '2026-03-29T01:00:00.000Z');
  const p = policy({ schedule: { kind: 'every', seconds: 60 }, timeZone: 'Europe/Oslo', window });
  t.equal(iso(nextRunAt(p, at('2026-03-28T23:00:00Z'), zero)), '2026-03-29T01:00:00.000Z');
});

t.test('schedule – a window in the repeated hour is one occurrence', async (t) => {
  const window: ScheduleWindow = { start: '02:15', end: '02:45' };
  const tz = 'Europe/Oslo';
  t.equal(iso(windowOccurrenceStart(at('2026-10-25T01:20:00Z'), window, tz)), '2026-10-25T00:15:00.000Z', 'second pass belongs to the first');
  t.notOk(isInsideWindow(at('2026-10-25T00:50:00Z'), window, tz), '02:50 CEST is outside');
  t.equal(iso(startOfWindowAfter(at('2026-10-25T00:50:00Z'), window, tz)), '2026-10-25T01:15:00.000Z', 'reopens at 02:15 CET');
  const p = policy({ schedule: { kind: 'every', seconds: 60 }, timeZone: tz, window, alternate: true });
  t.equal(iso(nextRunAt(p, at('2026-10-25T01:19:00Z'), zero, at('2026-10-25T00:20:00Z'))), '2026-10-26T01:15:00.000Z', 'alternate skips the second pass');
});

t.test('schedule – zonedParts gives wall-clock fields', async (t) => {
  t.same(zonedParts(at('2026-03-29T01:00:00Z'), 'Europe/Oslo'), { year: 2026, month: 3, day: 29, hour: 3, minute: 0, second: 0 });
});

t.test('schedule – chained runs stay inside windows, after from, one per occurrence', async (t) => {
  const rand = seeded(42);
  const zones = ['Europe/Oslo', 'America/New_York', 'Australia/Lord_Howe', 'UTC'];
  let checked = 0;
  for (const timeZone of zones) {
    for (let round = 0; round < 8; round++) {
      const startMinute = Math.floor(rand() * 1440);
      const lengthMinutes = 1 + Math.floor(rand() * 300);
      const hhmm = (m: number): string => `${String(Math.floor(m / 60) % 24).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
      const window = { start: hhmm(startMinute), end: hhmm((startMinute + lengthMinutes) % 1440) };
      const p = policy({
        schedule: round % 2 === 0 ? { kind: 'every', seconds: 60 + Math.floor(rand() * 90_000) } : { kind: 'cron', expression: `${Math.floor(rand() * 60)} * * * *` },
        timeZone,
        window,
        jitterSeconds: Math.floor(rand() * (lengthMinutes * 60 - 1)),
        alternate: true,
      });
      // Start a few days before a DST change so the chain crosses it.
      let from = new Date(Date.UTC(2026, round % 2 === 0 ? 2 : 9, 20 + round, Math.floor(rand() * 24)));
      let last: Date | undefined;
      for (let i = 0; i < 12; i++) {
        const next = nextRunAt(p, from, rand, last);
        const label = `${timeZone} ${window.start}-${window.end} run ${i}`;
        if (!(next > from)) t.fail(`${label}: ${iso(next)} not after ${iso(from)}`);
        if (!isInsideWindow(next, window, timeZone)) t.fail(`${label}: ${iso(next)} outside the window`);
        if (last !== undefined && iso(windowOccurrenceStart(last, window, timeZone)) === iso(windowOccurrenceStart(next, window, timeZone))) {
          t.fail(`${label}: ${iso(next)} in the same occurrence as ${iso(last)}`);
        }
        checked++;
        last = next;
        from = next;
      }
    }
  }
  t.equal(checked, zones.length * 8 * 12);
});

t.test('schedule – invalid policies throw ERR_POLICY_INVALID naming the field', async (t) => {
  const cases: Array<[string, Partial<SchedulePolicy>, RegExp]> = [
    ['every 0', { schedule: { kind: 'every', seconds: 0 } }, /schedule\.seconds/],
    ['every fractional', { schedule: { kind: 'every', seconds: 1.5 } }, /schedule\.seconds/],
    ['every too long', { schedule: { kind: 'every', seconds: 315_360_001 } }, /schedule\.seconds/],
    ['cron 3 fields', { schedule: { kind: 'cron', expression: '* * *' } }, /schedule\.expression must have 5 or 6 fields/],
    ['cron 7 fields', { schedule: { kind: 'cron', expression: '0 0 0 1 1 * 2026' } }, /schedule\.expression must have 5 or 6 fields/],
    ['cron too long', { schedule: { kind: 'cron', expression: `0 3 * * ${'1,'.repeat(62)}1` } }, /schedule\.expression must be a string of at most 128/],
    ['cron out of range', { schedule: { kind: 'cron', expression: '61 * * * *' } }, /^schedule\.expression is not a valid cron expression: Constraint error, got value 61/],
    ['cron impossible date', { schedule: { kind: 'cron', expression: '0 0 30 2 *' } }, /schedule\.expression is not a valid cron expression: /],
    ['cron hashed', { schedule: { kind: 'cron', expression: 'H 3 * * *' } }, /schedule\.expression must not use hashed/],
    ['unknown zone', { timeZone: 'Mars/Olympus_Mons' }, /timeZone/],
    ['empty zone', { timeZone: '' }, /timeZone/],
    ['window start', { window: { start: '24:00', end: '02:00' } }, /window\.start/],
    ['window end', { window: { start: '22:00', end: '2:00' } }, /window\.end/],
    ['window empty', { window: { start: '22:00', end: '22:00' } }, /window\.start and window\.end must differ/],
    ['jitter negative', { jitterSeconds: -1 }, /jitterSeconds/],
    ['jitter too large', { jitterSeconds: 86_401 }, /jitterSeconds/],
    ['jitter fractional', { jitterSeconds: 1.5 }, /jitterSeconds/],
    ['jitter longer than window', { window: { start: '01:00', end: '02:00' }, jitterSeconds: 3600 }, /jitterSeconds must be less than the window length/],
  ];
  for (const [name, overrides, message] of cases) {
    t.throws(() => validateSchedule(policy(overrides)), { code: 'ERR_POLICY_INVALID', message }, name);
  }
  t.throws(() => nextRunAt(policy({ jitterSeconds: -1 }), new Date(), zero), { code: 'ERR_POLICY_INVALID' }, 'nextRunAt validates too');
});

t.test('schedule – valid policies pass validation', async (t) => {
  t.doesNotThrow(() => validateSchedule(policy({ timeZone: 'UTC' })));
  t.doesNotThrow(() => validateSchedule(cron('0 0 3 * * mon-fri', 'Europe/Oslo')), '6 fields with names');
  t.doesNotThrow(() => validateSchedule(policy({ window: { start: '01:00', end: '02:00' }, jitterSeconds: 3599 })));
});
