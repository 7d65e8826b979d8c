/**
 * What an identity does to itself, on both APIs (OpenZiti's
 * `/current-identity/…`):
 *
 *   PUT|PATCH …/current-identity/authenticators/ID  {currentPassword, password}   change a updb password
 *
 * A new password follows the rules of the identity's auth policy.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { EdgeError } from '../../errors.js';
import { authPolicyOf, checkPasswordRules } from '../auth-policy.js';
import type { ControllerContext } from '../context.js';
import { hashPassword, verifyPassword } from '../passwords.js';
import { envelope } from '../present.js';
import { sessionToken } from './guard.js';
import { IdParams } from './identities.js';

const PasswordChange = Type.Object({
  currentPassword: Type.String({ minLength: 1, maxLength: 1024 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  username: Type.Optional(Type.String({ maxLength: 255 })),
}, { additionalProperties: true });

export function registerCurrentIdentityRoutes(app: FastifyInstance, ctx: ControllerContext, prefix: string): void {
  const changePassword = async (token: string | undefined, authenticatorId: string, body: Static<typeof PasswordChange>): Promise<unknown> => {
    const { identity } = ctx.sessions.resolve(token, new Date());
    const a = ctx.store.authenticators.get(authenticatorId);
    if (a === undefined || a.identityId !== identity.id) throw new EdgeError('ERR_NOT_FOUND', `authenticator ${authenticatorId} not found for this identity`);
    if (a.method !== 'updb' || a.passwordHash === null) throw new EdgeError('ERR_INVALID_ARGUMENT', `authenticator ${authenticatorId} is a certificate: it has no password`);
    if (body.username !== undefined && body.username !== a.username) throw new EdgeError('ERR_INVALID_ARGUMENT', 'username: a updb username cannot change', { details: { field: 'username' } });
    if (!(await verifyPassword(body.currentPassword, a.passwordHash))) throw new EdgeError('ERR_INVALID_AUTH', 'currentPassword is wrong');
    checkPasswordRules(authPolicyOf(ctx, identity), body.password);
    await ctx.store.updateAuthenticator({ ...a, passwordHash: await hashPassword(body.password), updatedAt: new Date().toISOString() });
    ctx.log.info({ identityId: identity.id }, 'password changed');
    return envelope({});
  };

  for (const method of ['PUT', 'PATCH'] as const) {
    app.route({
      method, url: `${prefix}/current-identity/authenticators/:id`, schema: { params: IdParams, body: PasswordChange },
      handler: async (req) => changePassword(sessionToken(req), (req.params as Static<typeof IdParams>).id, req.body as Static<typeof PasswordChange>),
    });
  }
}
