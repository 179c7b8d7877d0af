import type { Request } from 'express';

/** Browsers get pages; everything else (curl, which accepts anything, and APIs asking for application/json) gets JSON. */
export function wantsHtml(req: Request): boolean {
  return req.accepts(['json', 'html']) === 'html';
}
