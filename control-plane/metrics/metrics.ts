import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../../shared/logging/logger.js';

/** What the status gauges show (computed by the status service; names only, never a secret). */
export interface StatusFigures {
  agents: { online: number; offline: number; disabled: number };
  targetsOverdue: number;
  runs: { failed: number; parked: number; inFlight: number };
  leaks: { open: number; exposed: number };
  lastRotations: Array<{ project: string; target: string; at: Date }>;
}

/** The control plane's Prometheus metrics, on a registry of its own (one per process or test app). */
export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'sikker_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'] as const, registers: [this.registry] });
  readonly requestSeconds = new Histogram({ name: 'sikker_http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['route'] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [this.registry] });
  readonly sealed = new Gauge({ name: 'sikker_vault_sealed', help: '1 while the vault is sealed', registers: [this.registry] });

  // Status gauges (the figures of `sikker status`): read from PostgreSQL on scrape, see observeStatus.
  readonly agents = new Gauge({ name: 'sikker_agents', help: 'Agents by state (online, offline, disabled)', labelNames: ['state'] as const, registers: [this.registry], collect: () => this.status.refresh() });
  readonly targetsOverdue = new Gauge({ name: 'sikker_targets_overdue', help: 'Targets whose scheduled rotation is late, or whose run has held them too long', registers: [this.registry], collect: () => this.status.refresh() });
  readonly runs = new Gauge({ name: 'sikker_runs', help: 'failed/parked: targets whose most recent run failed or was parked; in_flight: runs holding their target', labelNames: ['state'] as const, registers: [this.registry], collect: () => this.status.refresh() });
  readonly leaksOpen = new Gauge({ name: 'sikker_leaks_open', help: 'Leaks being handled', registers: [this.registry], collect: () => this.status.refresh() });
  readonly leaksExposed = new Gauge({ name: 'sikker_leaks_exposed', help: 'Leaks that could not be neutralised', registers: [this.registry], collect: () => this.status.refresh() });
  readonly lastRotation = new Gauge({ name: 'sikker_target_last_rotation_timestamp_seconds', help: 'When each target\'s newest password went live', labelNames: ['project', 'target'] as const, registers: [this.registry], collect: () => this.status.refresh() });
  readonly statusCollected = new Gauge({ name: 'sikker_status_collected_timestamp_seconds', help: 'When the status gauges were last read successfully (older than a scrape or two: they are stale)', registers: [this.registry], collect: () => this.status.refresh() });
  private readonly status = new StatusCollector(this);

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Computes the status gauges from `read` on every scrape (never on a timer). A scrape
   * waits at most `timeoutMs`; a read that fails or is slower keeps the last values
   * (logged), and at most one read runs at a time however often /metrics is asked.
   */
  observeStatus(read: () => Promise<StatusFigures>, logger: Logger, timeoutMs = 3000): void {
    this.status.source = { read, logger, timeoutMs };
  }

  /** Sets the status gauges (replacing every per-target series). */
  setStatus(f: StatusFigures): void {
    for (const [state, n] of Object.entries(f.agents)) this.agents.set({ state }, n);
    this.targetsOverdue.set(f.targetsOverdue);
    this.runs.set({ state: 'failed' }, f.runs.failed);
    this.runs.set({ state: 'parked' }, f.runs.parked);
    this.runs.set({ state: 'in_flight' }, f.runs.inFlight);
    this.leaksOpen.set(f.leaks.open);
    this.leaksExposed.set(f.leaks.exposed);
    this.lastRotation.reset();
    for (const r of f.lastRotations) this.lastRotation.set({ project: r.project, target: r.target }, r.at.getTime() / 1000);
    this.statusCollected.set(Date.now() / 1000);
  }
}

/** One status read shared by every gauge of a scrape (prom-client calls each gauge's collect in parallel). */
class StatusCollector {
  source: { read: () => Promise<StatusFigures>; logger: Logger; timeoutMs: number } | null = null;
  private reading: Promise<void> | null = null;
  private scrape: Promise<void> | null = null;

  constructor(private readonly metrics: ControlPlaneMetrics) {}

  refresh(): Promise<void> {
    const source = this.source;
    if (source === null) return Promise.resolve();
    // A slow read goes on after a scrape gave up on it; the next scrape waits for that one instead of starting another.
    this.reading ??= source.read().then(
      (figures) => this.metrics.setStatus(figures),
      (err: unknown) => source.logger.warn({ err }, 'could not read the status figures for /metrics; serving the last values'),
    ).finally(() => {
      this.reading = null;
    });
    this.scrape ??= waitAtMost(this.reading, source.timeoutMs).then((finished) => {
      if (!finished) source.logger.warn({ timeoutMs: source.timeoutMs }, 'status figures for /metrics are slow; serving the last values');
    }).finally(() => {
      this.scrape = null;
    });
    return this.scrape;
  }
}

/** True when `work` settled within `ms`. */
async function waitAtMost(work: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([work.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); })]);
  clearTimeout(timer);
  return finished;
}
