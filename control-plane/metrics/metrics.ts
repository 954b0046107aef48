import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The control plane's Prometheus metrics, on a registry of its own (one per process or test app). */
export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'sikker_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'] as const, registers: [this.registry] });
  readonly requestSeconds = new Histogram({ name: 'sikker_http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['route'] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [this.registry] });
  readonly sealed = new Gauge({ name: 'sikker_vault_sealed', help: '1 while the vault is sealed', registers: [this.registry] });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }
}
