/** A repository webhook as GitHub's hooks API shows it (the fields we use). */
export interface RepositoryHook {
  id: number;
  active: boolean;
  events: string[];
  config: { url?: string; content_type?: string };
}

/** Marks the hooks ci_service made, so a new tunnel URL updates them instead of adding one. */
const MARKER = 'from=ci_service';

export function webhookUrl(publicUrl: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/webhook?${MARKER}`;
}

export function isOurHook(hook: RepositoryHook): boolean {
  try {
    return new URL(hook.config.url ?? '').searchParams.get('from') === 'ci_service';
  } catch {
    return false;
  }
}

export interface WebhookPlan {
  /** Create a hook, or update this one (URL, events, content type and secret). */
  write: { create: true } | { update: number };
  /** Further hooks of ours, which would deliver every event twice. */
  remove: number[];
}

/** Pure: what to do so that exactly one hook of ours exists (the oldest is kept). Others' hooks are left alone. */
export function planWebhook(existing: RepositoryHook[]): WebhookPlan {
  const ours = existing.filter(isOurHook).sort((a, b) => a.id - b.id);
  const [keep, ...extra] = ours;
  return { write: keep ? { update: keep.id } : { create: true }, remove: extra.map((hook) => hook.id) };
}
