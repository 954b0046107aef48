import type { WebSocket } from 'ws';
import type { HubToAgent } from '../../shared/protocol/agent-messages.js';

/**
 * One connected agent as the hub sees it. Kept small on purpose: a replica holds
 * tens of thousands of these.
 */
export class AgentConnection {
  /** Answered the last ping. */
  alive = true;
  /** The agent said hello (it has reported what it holds). */
  ready = false;
  /** Commands sent on this socket, so a sweep does not send them twice. */
  readonly sent = new Set<string>();
  /** Commands the agent reported as held at hello. */
  held = new Set<string>();
  /** `accepted` marks not yet written, by command id (the hub writes them after a delay unless the result comes first). */
  readonly acceptedLater = new Map<string, NodeJS.Timeout>();
  /** Messages are handled one after another, in arrival order (a flood queues here, bounded by the hub). */
  queue: Promise<void> = Promise.resolve();
  queued = 0;

  constructor(readonly agentId: string, readonly socket: WebSocket, readonly remoteAddress: string, readonly projectId: string | null = null) {}

  /** Sends on an open socket; false when the socket is closing or closed (nothing sent). */
  send(message: HubToAgent): boolean {
    if (this.socket.readyState !== this.socket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }
}
