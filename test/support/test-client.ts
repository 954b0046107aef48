import type { KeyObject } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { signRequest, ENROLLING_IDENTITY } from '../../shared/signing/request-signature.js';
import { exportPublicKey } from '../../shared/signing/ed25519-keys.js';

export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface CallOptions {
  signed?: boolean;
  /** Signs as of this time (for skew tests). */
  now?: number;
  /** Changes the request after signing (for tamper tests). */
  mutate?: (request: RawRequest) => void;
  identityId?: string;
  /** Source address to connect from (e.g. 127.0.0.2), for CIDR tests. */
  localAddress?: string;
}

export interface CallResult {
  status: number;
  body: any;
  headers: RawRequest;
}

/** A deliberately low-level signed client for tests: every part can be tampered with. */
export class TestClient {
  identityId: string;

  constructor(readonly baseUrl: string, public privateKey: KeyObject, public publicKey: KeyObject, identityId: string = ENROLLING_IDENTITY) {
    this.identityId = identityId;
  }

  static fresh(baseUrl: string): TestClient {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    return new TestClient(baseUrl, privateKey, publicKey);
  }

  get publicKeyText(): string {
    return exportPublicKey(this.publicKey);
  }

  async call(method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<CallResult> {
    const raw: RawRequest = {
      method, path, headers: {},
      body: body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body)),
    };
    if (options.signed ?? true) {
      Object.assign(raw.headers, signRequest(this.privateKey, { method, pathWithQuery: path, body: raw.body, identityId: options.identityId ?? this.identityId }, options.now));
    }
    if (body !== undefined) raw.headers['content-type'] = 'application/json';
    options.mutate?.(raw);
    const response = await send(this.baseUrl, raw, options.localAddress);
    const text = response.text;
    let parsed: unknown = text;
    try {
      parsed = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      // non-JSON (metrics): keep the text
    }
    return { status: response.status, body: parsed, headers: raw };
  }

  /** Calls and throws unless the status is 2xx; returns the body. */
  async ok(method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<any> {
    const result = await this.call(method, path, body, options);
    if (result.status >= 300) throw new Error(`${method} ${path} → ${result.status} ${JSON.stringify(result.body)}`);
    return result.body;
  }
}

function send(baseUrl: string, raw: RawRequest, localAddress: string | undefined): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(baseUrl + raw.path);
    const req = httpRequest({
      host: url.hostname, port: url.port, path: raw.path, method: raw.method,
      headers: { ...raw.headers, ...(raw.body.length > 0 ? { 'content-length': String(raw.body.length) } : {}) },
      ...(localAddress === undefined ? {} : { localAddress }),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(raw.body.length > 0 ? raw.body : undefined);
  });
}
