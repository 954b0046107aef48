/**
 * Injected into the agent bundle (bundle-agent.ts) as the value of `import.meta.url`, which
 * CommonJS lacks. Only meaningful inside that bundle, where `__filename` is the bundle itself.
 */
import { pathToFileURL } from 'node:url';

export const bundleUrl = pathToFileURL(__filename).href;
