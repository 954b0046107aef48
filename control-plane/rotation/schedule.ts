/**
 * When a rotation policy is next due. Pure functions: no clock, no I/O, and the
 * only randomness (jitter) comes from the caller's `rand`, so tests are exact.
 *
 * Wall-clock times (cron fields, maintenance windows) are read in the policy's
 * IANA time zone. Cron arithmetic is cron-parser's (its `tz` option is DST-aware);
 * window arithmetic uses Intl only: the zone's UTC offset is piecewise constant,
 * so we find the offset changes near an instant and map local window intervals
 * back to instants segment by segment. That gives DST behaviour that matches what
 * a clock on the wall shows:
 * - a window whose start falls in a skipped hour opens at the first instant after
 *   it (the transition itself), and one lying wholly in a skipped hour does not
 *   occur that day;
 * - in a repeated hour the window occurrence is the same one both times round
 *   (one local day, one occurrence), which is what the alternate rule relies on.
 */
import { CronExpressionParser } from 'cron-parser';
import { SikkerError } from '../../shared/errors/sikker-error.js';

export type ScheduleSpec = { kind: 'every'; seconds: number } | { kind: 'cron'; expression: string };

/**
 * A daily maintenance window as 'HH:MM' (24 h) wall-clock times in the policy's
 * time zone; the start is inclusive, the end exclusive. `end < start` means the
 * window runs over midnight; `start === end` is refused.
 */
export interface ScheduleWindow {
  start: string;
  end: string;
}

export interface SchedulePolicy {
  schedule: ScheduleSpec;
  /** IANA zone name, e.g. 'Europe/Oslo' or 'UTC'. */
  timeZone: string;
  window?: ScheduleWindow;
  /** A random delay of up to this many seconds is added to each run (spreads load). */
  jitterSeconds: number;
  /** Never run twice within the same window occurrence (alternating users). */
  alternate: boolean;
}

/** Wall-clock fields of an instant in a time zone (month 1–12, hour 0–23). */
export interface ZonedParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

const MAX_EVERY_SECONDS = 315_360_000; // ten years
const MAX_CRON_LENGTH = 128;
const MAX_JITTER_SECONDS = 86_400;
const MAX_REASON_LENGTH = 200;
const HH_MM = /^([01]\d|2[0-3]):([0-5]\d)$/;
/** cron-parser's hashed fields (`H`, `H/15`, `H(0-29)`) draw from an unseeded PRNG. */
const HASHED_FIELD = /(?:^|,)H(?=$|[(/,])/;
/** Fixed reference for test-evaluating a cron expression, so validation stays pure. */
const CRON_PROBE_FROM = new Date(Date.UTC(2000, 0, 1));

/** Zone offsets are sampled this often; real zones never change twice within it. */
const OFFSET_PROBE_MS = 6 * HOUR_MS;
/** Far enough to reach the next opening even when a DST change swallows one. */
const SEARCH_AHEAD_MS = 3 * DAY_MS;
/** One window occurrence spans less than a day plus a DST shift. */
const SEARCH_BEHIND_MS = 2 * DAY_MS;

interface CompiledWindow {
  /** Local start as milliseconds after local midnight. */
  startMs: number;
  /** Length in local wall-clock time, 1 minute .. 23 h 59 min. */
  lengthMs: number;
}

/** An interval of instants [start, end) during which window occurrence `day` is open. */
interface WindowPiece {
  /** Local day number (days since 1970-01-01 in wall-clock time) on which the occurrence starts. */
  day: number;
  start: number;
  end: number;
}

interface OffsetSegment {
  start: number;
  end: number;
  /** local wall-clock ms minus UTC ms, constant within the segment */
  offset: number;
}

/**
 * Throws `ERR_POLICY_INVALID` naming the first offending field: schedule.seconds
 * (integer 1..315360000), schedule.expression (5 or 6 cron fields, at most 128
 * characters, parseable; the parser's reason is included), timeZone (a zone Intl
 * knows), window.start / window.end ('HH:MM', different), jitterSeconds (integer
 * 0..86400 and shorter than the window), alternate (boolean).
 */
export function validateSchedule(p: SchedulePolicy): void {
  validateTimeZone(p.timeZone);
  validateSpec(p.schedule, p.timeZone);
  const window = p.window === undefined ? undefined : compileWindow(p.window);
  validateJitter(p.jitterSeconds, window);
  if (typeof p.alternate !== 'boolean') invalid('alternate must be true or false');
}

/**
 * The next time the policy is due, strictly after `from` (`at`), and the base it was drawn
 * from (`base`), which the caller keeps and passes back as `previousBase` next time:
 * 1. base: `from + seconds` — or, given `previousBase`, the first of `previousBase + k ·
 *    seconds` after `from`, so a run's lateness and jitter never shift later runs and runs
 *    missed while nothing was running are skipped, not made up — or the next cron
 *    occurrence after `from` in the zone (cron has its own grid and ignores `previousBase`);
 * 2. a base outside the window moves to the window's next opening;
 * 3. `rand() * jitterSeconds` is added, shortened so the run stays inside the window;
 * 4. with `alternate`, if `lastRunAt` lies in the same window occurrence as the
 *    result, the run moves to the next occurrence (and is jittered inside it).
 * `rand` must return numbers in [0, 1). Throws `ERR_POLICY_INVALID` for an invalid
 * policy and `ERR_INTERNAL` for an invalid `from`, `previousBase` or `rand` value.
 */
export function nextRun(p: SchedulePolicy, from: Date, rand: () => number, lastRunAt?: Date, previousBase?: Date): { at: Date; base: Date } {
  validateSchedule(p);
  const base = baseRunAt(p, instantOf(from, 'from'), previousBase === undefined ? undefined : instantOf(previousBase, 'previousBase'));
  return { at: new Date(placeRun(p, base, rand, lastRunAt)), base: new Date(base) };
}

/** Steps 2–4 of {@link nextRun} for `base`. */
function placeRun(p: SchedulePolicy, base: number, rand: () => number, lastRunAt: Date | undefined): number {
  const maxJitterMs = p.jitterSeconds * SECOND_MS;
  if (p.window === undefined) return base + jitterMs(maxJitterMs, rand);

  const window = compileWindow(p.window);
  const tz = p.timeZone;
  const start = isInside(base, window, tz) ? base : openingAfter(base, window, tz);
  const piece = pieceAt(start, window, tz);
  let runAt = start + jitterMs(Math.min(maxJitterMs, piece.end - start), rand);

  if (p.alternate && lastRunAt !== undefined) {
    const day = piece.day;
    if (occurrenceDay(instantOf(lastRunAt, 'lastRunAt'), window, tz) === day) {
      const next = firstPiece(runAt, runAt + SEARCH_AHEAD_MS, window, tz, (candidate) => candidate.day > day);
      runAt = next.start + jitterMs(Math.min(maxJitterMs, next.end - next.start), rand);
    }
  }
  return runAt;
}

/** Whether `date`'s wall-clock time in `tz` lies in the window (start inclusive, end exclusive). */
export function isInsideWindow(date: Date, window: ScheduleWindow, tz: string): boolean {
  return isInside(instantOf(date, 'date'), compileWindow(window), tz);
}

/**
 * The first instant of the window occurrence that contains `date`, or null when
 * `date` is outside the window. For a window over midnight, 01:00 belongs to the
 * occurrence that opened the evening before.
 */
export function windowOccurrenceStart(date: Date, window: ScheduleWindow, tz: string): Date | null {
  const compiled = compileWindow(window);
  const at = instantOf(date, 'date');
  const day = occurrenceDay(at, compiled, tz);
  if (day === null) return null;
  const first = firstPiece(at - SEARCH_BEHIND_MS, at + 1, compiled, tz, (piece) => piece.day === day);
  return new Date(first.start);
}

/**
 * The first instant strictly after `date` at which the window opens: its start
 * time on the next day it occurs, or the DST transition when the start time is
 * skipped, or the moment a repeated hour brings the clock back to the start time.
 */
export function startOfWindowAfter(date: Date, window: ScheduleWindow, tz: string): Date {
  return new Date(openingAfter(instantOf(date, 'date'), compileWindow(window), tz));
}

/** Wall-clock fields of `date` in `tz` (an IANA zone; throws RangeError for unknown zones). */
export function zonedParts(date: Date, tz: string): ZonedParts {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(tz).formatToParts(date)) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return {
    year: parts['year'] ?? NaN,
    month: parts['month'] ?? NaN,
    day: parts['day'] ?? NaN,
    hour: parts['hour'] ?? NaN,
    minute: parts['minute'] ?? NaN,
    second: parts['second'] ?? NaN,
  };
}

// ---- validation -------------------------------------------------------------

function invalid(message: string): never {
  throw new SikkerError('ERR_POLICY_INVALID', message);
}

function validateTimeZone(timeZone: unknown): void {
  if (typeof timeZone !== 'string' || timeZone.length === 0) invalid('timeZone must be an IANA time zone name');
  try {
    Intl.DateTimeFormat(undefined, { timeZone });
  } catch {
    // RangeError is Intl's only answer for an unknown zone; the message names the field instead.
    invalid('timeZone is not a known IANA time zone');
  }
}

function validateSpec(spec: ScheduleSpec, timeZone: string): void {
  if (spec?.kind === 'every') {
    const { seconds } = spec;
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_EVERY_SECONDS) {
      invalid(`schedule.seconds must be an integer from 1 to ${MAX_EVERY_SECONDS}`);
    }
    return;
  }
  if (spec?.kind === 'cron') return validateCron(spec.expression, timeZone);
  invalid("schedule.kind must be 'every' or 'cron'");
}

function validateCron(expression: unknown, timeZone: string): void {
  if (typeof expression !== 'string' || expression.length > MAX_CRON_LENGTH) {
    invalid(`schedule.expression must be a string of at most ${MAX_CRON_LENGTH} characters`);
  }
  const fields = expression.trim().split(/\s+/).filter((field) => field.length > 0);
  if (fields.length !== 5 && fields.length !== 6) {
    invalid(`schedule.expression must have 5 or 6 fields, not ${fields.length}`);
  }
  if (fields.some((field) => HASHED_FIELD.test(field))) {
    invalid('schedule.expression must not use hashed (H) fields; use jitterSeconds to spread runs');
  }
  try {
    CronExpressionParser.parse(expression, { tz: timeZone, currentDate: CRON_PROBE_FROM }).next();
  } catch (err) {
    // The parser's reason is what the operator needs; its stack and the options are not.
    invalid(`schedule.expression is not a valid cron expression: ${parserReason(err)}`);
  }
}

function parserReason(err: unknown): string {
  const reason = err instanceof Error ? err.message : String(err);
  return reason.length > MAX_REASON_LENGTH ? `${reason.slice(0, MAX_REASON_LENGTH)}…` : reason;
}

function compileWindow(window: ScheduleWindow): CompiledWindow {
  const startMs = parseHhMm(window?.start, 'window.start');
  const endMs = parseHhMm(window?.end, 'window.end');
  if (startMs === endMs) invalid('window.start and window.end must differ');
  return { startMs, lengthMs: mod(endMs - startMs, DAY_MS) };
}

function parseHhMm(value: unknown, field: string): number {
  const match = typeof value === 'string' ? HH_MM.exec(value) : null;
  if (match === null) invalid(`${field} must be a 24-hour time 'HH:MM'`);
  return Number(match[1]) * HOUR_MS + Number(match[2]) * MINUTE_MS;
}

function validateJitter(jitterSeconds: unknown, window: CompiledWindow | undefined): void {
  if (typeof jitterSeconds !== 'number' || !Number.isInteger(jitterSeconds) || jitterSeconds < 0 || jitterSeconds > MAX_JITTER_SECONDS) {
    invalid(`jitterSeconds must be an integer from 0 to ${MAX_JITTER_SECONDS}`);
  }
  if (window !== undefined && jitterSeconds * SECOND_MS >= window.lengthMs) {
    invalid(`jitterSeconds must be less than the window length (${window.lengthMs / SECOND_MS} s)`);
  }
}

function instantOf(date: Date, name: string): number {
  const ms = date instanceof Date ? date.getTime() : NaN;
  if (!Number.isFinite(ms)) throw new SikkerError('ERR_INTERNAL', `${name} must be a valid Date`);
  return ms;
}

// ---- schedule arithmetic ----------------------------------------------------

function baseRunAt(p: SchedulePolicy, fromMs: number, previousBaseMs?: number): number {
  if (p.schedule.kind === 'every') {
    const stepMs = p.schedule.seconds * SECOND_MS;
    if (previousBaseMs === undefined || previousBaseMs > fromMs) return fromMs + stepMs;
    // the first step of previousBase's grid strictly after from
    return previousBaseMs + (Math.floor((fromMs - previousBaseMs) / stepMs) + 1) * stepMs;
  }
  let next: number;
  try {
    next = CronExpressionParser.parse(p.schedule.expression, { tz: p.timeZone, currentDate: new Date(fromMs) }).next().toDate().getTime();
  } catch (err) {
    // Validated above, so this is the parser giving up on a search (e.g. its loop limit).
    invalid(`schedule.expression has no next occurrence: ${parserReason(err)}`);
  }
  if (!(next > fromMs)) throw new SikkerError('ERR_INTERNAL', 'cron parser returned an occurrence that is not after from');
  return next;
}

function jitterMs(rangeMs: number, rand: () => number): number {
  if (rangeMs <= 0) return 0;
  const r = rand();
  if (!(r >= 0 && r < 1)) throw new SikkerError('ERR_INTERNAL', 'rand() must return a number in [0, 1)');
  return Math.floor(r * rangeMs);
}

// ---- windows in a time zone -------------------------------------------------

function isInside(at: number, window: CompiledWindow, tz: string): boolean {
  return occurrenceDay(at, window, tz) !== null;
}

/** Local day on which the occurrence containing `at` started, or null when outside. */
function occurrenceDay(at: number, window: CompiledWindow, tz: string): number | null {
  const sinceStart = localWallMs(at, tz) - window.startMs;
  if (mod(sinceStart, DAY_MS) >= window.lengthMs) return null;
  return Math.floor(sinceStart / DAY_MS);
}

function openingAfter(at: number, window: CompiledWindow, tz: string): number {
  return firstPiece(at, at + SEARCH_AHEAD_MS, window, tz, (piece) => piece.start > at).start;
}

/** The contiguous open interval that contains `at`, which must be inside the window. */
function pieceAt(at: number, window: CompiledWindow, tz: string): WindowPiece {
  return firstPiece(at, at + SEARCH_AHEAD_MS, window, tz, (piece) => piece.start <= at && at < piece.end);
}

function firstPiece(fromMs: number, toMs: number, window: CompiledWindow, tz: string, wanted: (piece: WindowPiece) => boolean): WindowPiece {
  const found = windowPieces(fromMs, toMs, window, tz).find(wanted);
  if (found === undefined) throw new SikkerError('ERR_INTERNAL', 'no window occurrence found in the search range');
  return found;
}

/**
 * The window's open intervals within [fromMs, toMs), in order, clipped to the
 * range. Pieces of one occurrence that touch across a DST change are merged.
 */
function windowPieces(fromMs: number, toMs: number, window: CompiledWindow, tz: string): WindowPiece[] {
  const pieces: WindowPiece[] = [];
  for (const segment of offsetSegments(fromMs, toMs, tz)) {
    const localFrom = segment.start + segment.offset;
    const localTo = segment.end + segment.offset;
    for (let day = Math.floor((localFrom - window.startMs) / DAY_MS); day * DAY_MS + window.startMs < localTo; day++) {
      const openLocal = day * DAY_MS + window.startMs;
      const start = Math.max(openLocal - segment.offset, segment.start);
      const end = Math.min(openLocal + window.lengthMs - segment.offset, segment.end);
      if (start >= end) continue;
      const last = pieces[pieces.length - 1];
      if (last !== undefined && last.day === day && last.end === start) last.end = end;
      else pieces.push({ day, start, end });
    }
  }
  return pieces;
}

/** [fromMs, toMs) split where the zone's UTC offset changes. */
function offsetSegments(fromMs: number, toMs: number, tz: string): OffsetSegment[] {
  const segments: OffsetSegment[] = [];
  let start = fromMs;
  let offset = offsetAt(fromMs, tz);
  let probe = fromMs;
  while (probe < toMs) {
    const next = Math.min(probe + OFFSET_PROBE_MS, toMs);
    if (offsetAt(next, tz) === offset) {
      probe = next;
      continue;
    }
    const change = firstOffsetChange(probe, next, offset, tz);
    segments.push({ start, end: change, offset });
    start = change;
    offset = offsetAt(change, tz);
    probe = change;
  }
  segments.push({ start, end: toMs, offset });
  return segments.filter((segment) => segment.start < segment.end);
}

/** Smallest t in (lo, hi] whose offset differs from `offset`; offsetAt(lo) is `offset`, offsetAt(hi) is not. */
function firstOffsetChange(lo: number, hi: number, offset: number, tz: string): number {
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetAt(mid, tz) === offset) lo = mid;
    else hi = mid;
  }
  return hi;
}

function offsetAt(at: number, tz: string): number {
  return localWallMs(at, tz) - at;
}

/** The wall-clock time of `at` in `tz`, written as if it were a UTC instant. */
function localWallMs(at: number, tz: string): number {
  const p = zonedParts(new Date(at), tz);
  const wall = new Date(0);
  wall.setUTCFullYear(p.year, p.month - 1, p.day); // not Date.UTC: it maps years 0–99 to 19xx
  wall.setUTCHours(p.hour, p.minute, p.second, mod(at, SECOND_MS));
  return wall.getTime();
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(tz: string): Intl.DateTimeFormat {
  let formatter = formatters.get(tz);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, formatter);
  }
  return formatter;
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}
