/**
 * Posture data: what an identity's device reports about itself, and where
 * an admin reads it.
 *
 *   POST /edge/client/v1/posture-response        one postureResponse*Create (client.yml) → 201
 *   POST /edge/client/v1/posture-response-bulk   a list of them → 200
 *   GET  /edge/management/v1/identities/ID/posture-data   postureData (management.yml), read-only
 *
 * The caller is the identity of its API session (zt-session). Responses
 * (typeId MAC, OS, PROCESS, DOMAIN, and ENDPOINT_STATE for wake/unlock) are
 * checked whole before any is stored, then merged into the identity's
 * latest posture with src/policy applyPostureResponses, stamped with the
 * time the controller received them. `id` is the posture query (check) id
 * the device answers; when it names an existing check, the types must fit.
 * Routers evaluate checks against this data from their policy snapshot.
 */
import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { applyPostureResponses, type PostureResponse } from '../../policy/posture.js';
import { firstSchemaProblem } from '../config-types.js';
import type { ControllerContext } from '../context.js';
import { envelope } from '../present.js';
import type { ApiSessionRecord, PostureDataRecord } from '../store.js';
import { requireAdmin, sessionToken } from './guard.js';
import { getIdentity, IdParams } from './identities.js';

/** Processes kept per identity; the oldest reports go first beyond this. */
const MAX_PROCESSES = 128;
const MAX_BULK = 64;

const ResponseBase = Type.Object({ id: Type.String({ minLength: 1, maxLength: 255 }), typeId: Type.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: true });

const RESPONSE_SCHEMAS: Record<string, TObject> = {
  MAC: Type.Object({ macAddresses: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 256 }) }),
  OS: Type.Object({ type: Type.String({ minLength: 1, maxLength: 64 }), version: Type.String({ minLength: 1, maxLength: 128 }), build: Type.Optional(Type.String({ maxLength: 128 })) }),
  PROCESS: Type.Object({
    path: Type.String({ minLength: 1, maxLength: 1024 }), isRunning: Type.Boolean(),
    hash: Type.Optional(Type.String({ maxLength: 256 })), signerFingerprints: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: 64 })),
  }),
  DOMAIN: Type.Object({ domain: Type.String({ maxLength: 253 }) }),
  ENDPOINT_STATE: Type.Object({ woken: Type.Optional(Type.Boolean()), unlocked: Type.Optional(Type.Boolean()) }),
};
const RESPONSE_CHECKS = Object.fromEntries(Object.entries(RESPONSE_SCHEMAS).map(([t, s]) => [t, TypeCompiler.Compile(s)])) as Record<string, TypeCheck<TSchema>>;

/** The check types a response of each type may answer. */
const ANSWERS: Record<string, readonly string[]> = { MAC: ['MAC'], OS: ['OS'], PROCESS: ['PROCESS', 'PROCESS_MULTI'], DOMAIN: ['DOMAIN'], ENDPOINT_STATE: ['MFA'] };

type Checked = PostureResponse | { id: string; typeId: 'ENDPOINT_STATE'; woken?: boolean; unlocked?: boolean };

/** One response, checked; `at` prefixes field names in messages (`[2].macAddresses`). */
function checkResponse(ctx: ControllerContext, raw: Record<string, unknown>, at: string): Checked {
  const typeId = String(raw.typeId);
  const check = RESPONSE_CHECKS[typeId];
  if (check === undefined) {
    throw new EdgeError('ERR_INVALID_ARGUMENT', `${at}typeId: "${typeId}" is not a posture response type (${Object.keys(RESPONSE_SCHEMAS).join(', ')})`, { details: { field: `${at}typeId` } });
  }
  const fields: Record<string, unknown> = {};
  for (const f of Object.keys(RESPONSE_SCHEMAS[typeId]!.properties)) if (raw[f] !== undefined) fields[f] = raw[f];
  const bad = firstSchemaProblem(check, fields, '', `a ${typeId} posture response`);
  if (bad !== undefined) throw new EdgeError('ERR_INVALID_ARGUMENT', `invalid ${typeId} posture response: ${at}${bad[0]}: ${bad[1]}`, { details: { field: `${at}${bad[0]}` } });
  const known = ctx.store.postureChecks.get(String(raw.id));
  if (known !== undefined && !ANSWERS[typeId]!.includes(known.typeId)) {
    throw new EdgeError('ERR_INVALID_ARGUMENT', `${at}id: posture check "${known.name}" is of type ${known.typeId}; a ${typeId} response does not answer it`, { details: { field: `${at}id` } });
  }
  return { id: String(raw.id), typeId, ...fields } as Checked;
}

/** The identity's posture with `responses` merged in, received `at`. */
function merged(prev: PostureDataRecord | undefined, identityId: string, responses: Checked[], at: string): PostureDataRecord {
  const reports = responses.filter((r): r is PostureResponse => r.typeId !== 'ENDPOINT_STATE');
  const data = applyPostureResponses(prev?.data, reports, at);
  const processes = data.processes !== undefined && data.processes.length > MAX_PROCESSES ? data.processes.slice(-MAX_PROCESSES) : data.processes;
  const queryIds = { ...prev?.queryIds };
  for (const r of reports) queryIds[r.typeId === 'PROCESS' ? `process:${r.path}` : r.typeId.toLowerCase()] = r.id;
  let { wokenAt, unlockedAt } = prev ?? { wokenAt: null, unlockedAt: null };
  for (const r of responses) {
    if (r.typeId !== 'ENDPOINT_STATE') continue;
    if (r.woken === true) wokenAt = at;
    if (r.unlocked === true) unlockedAt = at;
  }
  return { identityId, data: processes === data.processes ? data : { ...data, processes }, queryIds, wokenAt, unlockedAt, updatedAt: at };
}

/**
 * postureData: absent reports (and passedAt before MFA passed) are null,
 * where OpenZiti sends zero values; processes carry their `path` too.
 */
function presentPostureData(rec: PostureDataRecord | undefined, sessions: ApiSessionRecord[]): Record<string, unknown> {
  const ids = rec?.queryIds ?? {};
  const base = (kind: string, at: string) => ({ postureCheckId: ids[kind] ?? '', timedOut: false, lastUpdatedAt: at });
  const d = rec?.data;
  const apiSessionPostureData: Record<string, unknown> = {};
  for (const s of sessions) {
    apiSessionPostureData[s.id] = {
      mfa: { apiSessionId: s.id, passedMfa: s.mfaPassedAt != null, passedAt: s.mfaPassedAt ?? null, passedOnWake: false, passedOnUnlock: false },
      ...(rec !== undefined && (rec.wokenAt !== null || rec.unlockedAt !== null) ? { endpointState: { wokenAt: rec.wokenAt, unlockedAt: rec.unlockedAt } } : {}),
    };
  }
  return {
    mac: d?.mac === undefined ? null : { ...base('mac', d.mac.at), addresses: d.mac.macAddresses },
    os: d?.os === undefined ? null : { ...base('os', d.os.at), type: d.os.type, version: d.os.version, build: d.os.build ?? '' },
    domain: d?.domain === undefined ? null : { ...base('domain', d.domain.at), domain: d.domain.domain },
    processes: (d?.processes ?? []).map((p) => ({
      ...base(`process:${p.path}`, p.at), path: p.path, isRunning: p.isRunning, binaryHash: p.hash ?? '', signerFingerprints: p.signerFingerprints ?? [],
    })),
    apiSessionPostureData,
  };
}

export function registerPostureDataRoutes(app: FastifyInstance, ctx: ControllerContext, clientPrefix: string, managementPrefix: string): void {
  const { store } = ctx;

  const receive = async (token: string | undefined, raws: Record<string, unknown>[], bulk: boolean): Promise<void> => {
    const { identity } = ctx.sessions.resolve(token, new Date());
    const responses = raws.map((r, i) => checkResponse(ctx, r, bulk ? `[${i}].` : ''));
    const at = new Date().toISOString();
    await store.updatePostureData(identity.id, (prev) => merged(prev, identity.id, responses, at));
    ctx.log.debug({ identityId: identity.id, types: responses.map((r) => r.typeId) }, 'posture received');
  };

  app.post(`${clientPrefix}/posture-response`, { schema: { body: ResponseBase } }, async (req, reply) => {
    await receive(sessionToken(req), [req.body as Record<string, unknown>], false);
    void reply.status(201);
    return envelope({ services: [] });
  });

  app.post(`${clientPrefix}/posture-response-bulk`, { schema: { body: Type.Array(ResponseBase, { maxItems: MAX_BULK }) } }, async (req) => {
    await receive(sessionToken(req), req.body as Record<string, unknown>[], true);
    return envelope({ services: [] });
  });

  app.get(`${managementPrefix}/identities/:id/posture-data`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const identity = getIdentity(ctx, (req.params as Static<typeof IdParams>).id);
    return envelope(presentPostureData(store.postureData.get(identity.id), store.sessionsOf(identity.id)));
  });
}
