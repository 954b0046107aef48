import { Redis } from 'ioredis';
import type { Logger } from '../../shared/logging/logger.js';

/**
 * Fan-out between replicas through Redis pub/sub: "agent X has a command waiting" and
 * "identity X was disabled". Every replica hears every message and acts only for the
 * sockets it holds. Messages are hints: PostgreSQL holds the commands, and a periodic
 * sweep delivers anything a lost message left behind.
 */
export class CommandBus {
  private readonly subscriber: Redis;
  private readonly deliverChannel: string;
  private readonly disableChannel: string;
  private readonly sealChannel: string;

  constructor(
    private readonly publisher: Pick<Redis, 'publish'>,
    redisUrl: string,
    prefix: string,
    private readonly logger: Logger,
    handlers: { onDeliver: (agentId: string) => void; onDisable: (identityId: string) => void; onSeal: () => void },
  ) {
    this.deliverChannel = `${prefix}hub:deliver`;
    this.disableChannel = `${prefix}hub:disable`;
    this.sealChannel = `${prefix}cluster:seal`;
    this.subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
    this.subscriber.on('error', (err: Error) => logger.warn({ err: { message: err.message } }, 'hub bus subscriber problem (the periodic sweep still delivers)'));
    this.subscriber.subscribe(this.deliverChannel, this.disableChannel, this.sealChannel).catch((err: unknown) => logger.error({ err }, 'hub bus could not subscribe'));
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.sealChannel) {
        handlers.onSeal();
        return;
      }
      if (!/^[0-9a-f-]{36}$/.test(message)) return; // not ours; ignore
      if (channel === this.deliverChannel) handlers.onDeliver(message);
      else if (channel === this.disableChannel) handlers.onDisable(message);
    });
  }

  /** Best effort: a failed publish is covered by the sweep, so it is logged, not thrown. */
  async announceCommand(agentId: string): Promise<void> {
    await this.publisher.publish(this.deliverChannel, agentId).catch((err: unknown) => this.logger.warn({ err }, 'could not announce a command; the sweep will deliver it'));
  }

  async announceDisabled(identityId: string): Promise<void> {
    await this.publisher.publish(this.disableChannel, identityId).catch((err: unknown) => this.logger.warn({ err }, 'could not announce a disable; the sweep will close the socket'));
  }

  /** Tells every replica to seal. Sealing is also a command an attacker with Redis access could send: harmless (it only drops keys). */
  async announceSeal(): Promise<void> {
    await this.publisher.publish(this.sealChannel, 'seal').catch((err: unknown) => this.logger.error({ err }, 'could not tell the other replicas to seal; seal each of them'));
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
