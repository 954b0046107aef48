import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Keeping the daemon close to the size of a bare node process (its budget is 1.3×).
 *
 * - The agent idles between rare commands, so V8's optimising compiler (TurboFan) buys
 *   little; it fires anyway on node's own module-loading code at start, and its code and
 *   memory stay resident. With the bundled agent, measured side by side: both compilers
 *   on 1.376×, TurboFan off 1.253×, both off 1.238×. The baseline compiler (Sparkplug)
 *   stays on: it costs ~0.3 MB and makes the JavaScript of a burst of commands (a
 *   project-wide leak: parsing, signing, the drivers) run well above interpreter speed.
 * - Start-up garbage is only returned to the system by V8's memory reducer, which starts
 *   after a full collection — and an idle agent may never trigger one on its own. One
 *   full collection shortly after start makes the drop happen (measured: about 9 MB).
 *
 * Together with loading CommonJS packages through require() (hub-socket.ts), this took
 * `npm run bench -- agent-rss` from 1.54–1.80× (depending on whether the reducer ever
 * ran) to 1.31–1.32× on node 20; shipping the agent as one bundle with zod tree-shaken
 * (agent/build/bundle-agent.ts) took it to 1.24×. What remains is mostly OpenSSL's
 * initialisation and node's https/tls/zlib modules that ws requires.
 *
 * Only the `sikker-agent` process calls these; in-process HubClients (tests,
 * benchmarks) leave V8 alone. Flags are set before the subcommand's modules load.
 */
export function useBaselineCompilerOnly(): void {
  setFlagsFromString('--no-opt');
}

/** Schedules one full garbage collection `delayMs` from now (the timer does not hold the process). */
export function collectStartupGarbage(delayMs: number): void {
  setFlagsFromString('--expose-gc');
  // The flag only equips contexts created after it; the main context stays without `gc`.
  const gc = runInNewContext('gc') as () => void;
  setTimeout(() => gc(), delayMs).unref();
}
