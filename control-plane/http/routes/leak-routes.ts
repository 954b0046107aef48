import * as z from 'zod';
import * as api from '../../../shared/protocol/api.js';
import * as leak from '../../../shared/protocol/leak-api.js';
import type { FingerprintService } from '../../leak/fingerprint-service.js';
import type { LeakReport } from '../../leak/leak-report.js';
import type { LeakService } from '../../leak/leak-service.js';
import type { RouteKit } from '../route-kit.js';

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function reportView(r: LeakReport): leak.LeakReport {
  return {
    leakId: r.leakId, project: r.project, secret: r.secret, target: r.target, leakedVersion: r.leakedVersion, foundBy: r.foundBy, state: r.state, reason: r.reason,
    reportedAt: r.reportedAt.toISOString(), neutralisedAt: iso(r.neutralisedAt), secondsToNeutralise: r.secondsToNeutralise, run: r.run,
    readers: r.readers.map((x) => ({ ...x, at: x.at.toISOString() })),
    deliveries: r.deliveries.map((x) => ({ ...x, at: x.at.toISOString() })),
  };
}

/** Leak response and fingerprint matching. */
export function registerLeakRoutes(kit: RouteKit, deps: { leaks: LeakService; fingerprints: FingerprintService }): void {
  const ProjectParams = z.object({ project: api.ProjectName });
  kit.add({
    method: 'POST', url: '/v1/projects/:project/leaks', summary: 'A secret (or every target of the project) leaked: rotate now, revoke older versions, report who had it', auth: 'identity',
    params: ProjectParams, body: leak.LeakByNameRequest, response: leak.LeakStarted,
    handler: async ({ identity, sourceIp, params, body }) => (body.all
      ? deps.leaks.wholeProject(identity, sourceIp, params.project, { killSessions: body.killSessions })
      : deps.leaks.byName(identity, sourceIp, params.project, body.secret ?? '', body.version, { killSessions: body.killSessions })),
  });
  kit.add({
    method: 'POST', url: '/v1/leaks/by-value', summary: 'A value leaked: find it by keyed fingerprint (nothing is decrypted), then as by name', auth: 'identity',
    body: leak.LeakByValueRequest, response: leak.LeakStarted,
    handler: async ({ identity, sourceIp, body }) => deps.leaks.byValue(identity, sourceIp, body.value, body.project, { killSessions: body.killSessions }),
  });
  kit.add({
    method: 'GET', url: '/v1/projects/:project/leaks/:leakId', summary: 'A leak: its state, the time to neutralise it, who read it, where it was delivered', auth: 'identity',
    params: z.object({ project: api.ProjectName, leakId: api.Uuid }), response: leak.LeakReport,
    handler: async ({ identity, params }) => reportView(await deps.leaks.report(identity, params.project, params.leakId)),
  });
  kit.add({
    method: 'POST', url: '/v1/fingerprints/match', summary: 'Which of these strings are values this vault manages? (keyed fingerprints; candidates are not stored)', auth: 'identity',
    body: leak.MatchRequest, response: leak.MatchResponse,
    handler: async ({ identity, sourceIp, body }) => ({
      matches: (await deps.fingerprints.match(identity, sourceIp, body.candidates, body.project)).map((m) => ({ index: m.index, project: m.project, secret: m.secret, version: m.version, label: m.label, state: m.state, leaked: m.leaked })),
    }),
  });
}
