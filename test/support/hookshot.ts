import { signature256 } from './deliveries.js';

/** One attempt to deliver an event to a hook, as GitHub's hook deliveries API lists it (with the body, to redeliver). */
export interface HookDelivery {
  id: number;
  guid: string;
  event: string;
  action: string | null;
  delivered_at: string;
  redelivery: boolean;
  /** 0 when the hook's URL did not answer. */
  status_code: number;
  status: string;
  body: string;
}

/**
 * One attempt to deliver an event, as GitHub's Hookshot makes it: a signed JSON POST answered within 10 s.
 * Returns the status code and the words GitHub's deliveries API records for it (0: no answer).
 */
export async function postDelivery(
  url: string,
  secret: string,
  delivery: { guid: string; event: string; body: string },
  extraHeaders: Record<string, string> = {},
): Promise<{ statusCode: number; status: string }> {
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': delivery.event,
        'x-github-delivery': delivery.guid,
        'x-hub-signature-256': signature256(secret, delivery.body),
        'user-agent': 'GitHub-Hookshot/stand-in',
        ...extraHeaders,
      },
      body: delivery.body,
      signal: AbortSignal.timeout(10_000),
    });
    await response.arrayBuffer();
    return { statusCode: response.status, status: response.ok ? 'OK' : `Invalid HTTP Response: ${response.status}` };
  } catch {
    // Refused, or no answer within GitHub's 10 s.
    return { statusCode: 0, status: 'failed to connect' };
  }
}
