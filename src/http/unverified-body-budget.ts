import type { RequestHandler } from 'express';

export interface BodyBudget {
  /** Bodies up to this many bytes draw on the small budget; larger ones on the large budget. */
  smallBodyBytes: number;
  smallBudgetBytes: number;
  largeBudgetBytes: number;
  /** The largest body taken at all (GitHub sends at most 25 MB). */
  maxBodyBytes: number;
}

/** GitHub's deliveries are a few KB; a push of thousands of commits reaches a few MB. */
export const WEBHOOK_BODY_BUDGET: BodyBudget = {
  smallBodyBytes: 1024 * 1024,
  smallBudgetBytes: 32 * 1024 * 1024,
  largeBudgetBytes: 64 * 1024 * 1024,
  maxBodyBytes: 25 * 1024 * 1024,
};

/**
 * Bounds the bytes of webhook bodies held before their signature is checked. A body reserves its
 * Content-Length before a byte of it is read and gives it back when its answer has gone; one that does
 * not fit is answered 503 unread. Small bodies have a budget of their own, so that large slow ones sent by
 * anyone cannot keep GitHub's deliveries out.
 */
export function unverifiedBodyBudget(budget: BodyBudget): RequestHandler {
  const held = { small: 0, large: 0 };
  return (req, res, next) => {
    const length = Number(req.get('content-length'));
    if (req.get('content-length') === undefined || !Number.isInteger(length) || length < 0) {
      refuse(res, 411, 'send Content-Length: GitHub always does');
      return;
    }
    if (length > budget.maxBodyBytes) {
      refuse(res, 413, `body larger than ${budget.maxBodyBytes / 1024 / 1024} MB: GitHub never sends more, so this is not a webhook delivery`);
      return;
    }
    const pool = length <= budget.smallBodyBytes ? 'small' : 'large';
    const limit = pool === 'small' ? budget.smallBudgetBytes : budget.largeBudgetBytes;
    if (held[pool] + length > limit) {
      res.set('Retry-After', '10');
      refuse(res, 503, 'too many webhook bodies are being received at once: redeliver this delivery in a moment');
      return;
    }
    held[pool] += length;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      held[pool] -= length;
    };
    res.once('finish', release);
    res.once('close', release);
    next();
  };
}

/** An answer that closes the connection: the body it did not read must not hold the socket. */
function refuse(res: Parameters<RequestHandler>[1], status: number, error: string): void {
  res.set('Connection', 'close').status(status).json({ error });
}
