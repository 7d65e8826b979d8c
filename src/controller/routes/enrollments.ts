/** Pending enrollments: `/edge/management/v1/enrollments[/ID]` (list, read, delete). */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import type { FieldGetter } from '../filter.js';
import { envelope, listEnvelope, presentEnrollment } from '../present.js';
import type { EnrollmentRecord } from '../store.js';
import { requireAdmin } from './guard.js';
import { ListQuery, page } from './identities.js';

const IdParams = Type.Object({ id: Type.String({ minLength: 1 }) });

const ENROLLMENT_FIELDS: Record<string, FieldGetter<EnrollmentRecord>> = {
  id: (e) => e.id,
  identity: (e) => e.identityId,
  identityId: (e) => e.identityId,
  method: (e) => e.method,
  token: (e) => e.token,
  username: (e) => e.username,
  expiresAt: (e) => e.expiresAt,
};

export function registerEnrollmentRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  app.get(`${prefix}/enrollments`, { schema: { querystring: ListQuery } }, async (req) => {
    requireAdmin(ctx, req);
    const all = ctx.store.listEnrollments().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const p = page(all, req.query as Static<typeof ListQuery>, ENROLLMENT_FIELDS);
    return listEnvelope(await Promise.all(p.items.map((e) => presentEnrollment(ctx, e))), p.total, p.limit, p.offset, Object.keys(ENROLLMENT_FIELDS));
  });

  app.get(`${prefix}/enrollments/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const e = ctx.store.enrollments.get((req.params as Static<typeof IdParams>).id);
    if (e === undefined) throw new EdgeError('ERR_NOT_FOUND', `enrollment ${(req.params as Static<typeof IdParams>).id} not found`);
    return envelope(await presentEnrollment(ctx, e));
  });

  app.delete(`${prefix}/enrollments/:id`, { schema: { params: IdParams } }, async (req) => {
    requireAdmin(ctx, req);
    const id = (req.params as Static<typeof IdParams>).id;
    if (!(await ctx.store.deleteEnrollment(id))) throw new EdgeError('ERR_NOT_FOUND', `enrollment ${id} not found`);
    ctx.log.info({ enrollmentId: id }, 'enrollment deleted');
    return envelope({});
  });
}
