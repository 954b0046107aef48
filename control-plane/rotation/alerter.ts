import type { Logger } from '../../shared/logging/logger.js';

/** What an alert says. Names and codes only: never a secret. */
export interface Alert {
  event: 'rotation.parked' | 'rotation.revoke-stuck' | 'rotation.reconcile-stuck';
  project: string;
  target: string;
  runId: string;
  code: string;
  reason: string;
}

/**
 * Sends alerts to the configured webhook (one JSON POST, 5 s timeout, no retries:
 * the run's state in PostgreSQL is the durable record, the alert is a nudge) and
 * always logs them. The URL itself is never logged (it may hold a token).
 */
export class Alerter {
  readonly sent: Alert[] = [];

  constructor(private readonly webhookUrl: string | null, private readonly logger: Logger) {}

  async send(alert: Alert): Promise<void> {
    this.logger.error({ alert }, `ALERT ${alert.event}: ${alert.project}/${alert.target}: ${alert.reason}`);
    this.sent.push(alert);
    if (this.sent.length > 100) this.sent.shift();
    if (this.webhookUrl === null) return;
    try {
      const response = await fetch(this.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ source: 'sikkerkey', at: new Date().toISOString(), ...alert }),
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) this.logger.warn({ status: response.status, event: alert.event }, 'the alert webhook answered with an error status');
    } catch (err) {
      this.logger.warn({ err: { name: (err as Error).name }, event: alert.event }, 'the alert webhook could not be reached');
    }
  }
}
