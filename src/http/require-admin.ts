import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';

/**
 * With ADMIN_TOKEN set, a request needs `Authorization: Bearer <token>` or basic auth with the token
 * as password (any user name), so a browser asks for it. Without it, everything is open.
 */
export function requireAdmin(adminToken: string | undefined): RequestHandler {
  if (!adminToken) return (_req, _res, next) => next();
  const expected = digest(adminToken);
  return (req, res, next) => {
    const presented = presentedToken(req.get('authorization') ?? '');
    if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return next();
    res
      .status(401)
      .set('WWW-Authenticate', 'Basic realm="ci_service", charset="UTF-8"')
      .json({ error: 'this page needs ADMIN_TOKEN: send it as a bearer token, or as the password of basic auth' });
  };
}

function presentedToken(header: string): string | undefined {
  const [scheme, value = ''] = header.split(' ', 2);
  if (scheme?.toLowerCase() === 'bearer') return value;
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    return decoded.slice(decoded.indexOf(':') + 1);
  }
  return undefined;
}

/** Fixed-length digests, so the comparison takes the same time whatever was sent. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
