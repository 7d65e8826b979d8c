/** Access checks shared by the management routes. */
import type { FastifyRequest } from 'fastify';
import { EdgeError } from '../../errors.js';
import type { ControllerContext } from '../context.js';
import type { ResolvedSession } from '../sessions.js';

export function sessionToken(req: FastifyRequest): string | undefined {
  const h = req.headers['zt-session'];
  return Array.isArray(h) ? h[0] : h;
}

/** Resolves the caller's session and insists on an admin identity. */
export function requireAdmin(ctx: ControllerContext, req: FastifyRequest): ResolvedSession {
  const resolved = ctx.sessions.resolve(sessionToken(req), new Date());
  if (!resolved.identity.isAdmin) throw new EdgeError('ERR_FORBIDDEN', `identity "${resolved.identity.name}" is not an administrator`);
  return resolved;
}
