import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from './logger.js';

export interface KeptSecret {
  /** The environment variable that sets it; unset, it is generated once and kept. */
  variable: 'WEBHOOK_SECRET' | 'ADMIN_TOKEN';
  /** The file under DATA_DIR that keeps a generated one. */
  file: string;
  /** What the person reading the log does with it. */
  use: string;
}

export const WEBHOOK_SECRET: KeptSecret = {
  variable: 'WEBHOOK_SECRET',
  file: 'webhook-secret',
  use: "give it to GitHub as the webhook's secret (Settings → Webhooks → Secret); ci_service sets it itself on the webhooks of WEBHOOK_REPOSITORIES",
};

export const ADMIN_TOKEN: KeptSecret = {
  variable: 'ADMIN_TOKEN',
  file: 'admin-token',
  use: 'the pages, the builds API and /metrics need it: a bearer token (curl -H "Authorization: Bearer <token>"), or the password of basic auth in a browser',
};

/**
 * The secret the environment set; otherwise the one kept under DATA_DIR; otherwise a new one, kept there
 * (mode 0600) and printed once, as Jenkins does with its first admin password. Nobody has to type one.
 */
export async function keptSecret(secret: KeptSecret, configured: string | undefined, dataDir: string, logger: Logger): Promise<string> {
  if (configured) return configured;
  const file = path.join(dataDir, secret.file);
  const kept = await readFile(file, 'utf8').then(
    (text) => text.trim(),
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return '';
      throw error;
    },
  );
  if (kept) return kept;
  const generated = randomBytes(32).toString('hex');
  await mkdir(dataDir, { recursive: true });
  try {
    // 'wx': two processes starting at once never overwrite each other's secret; the second takes the first's.
    await writeFile(file, `${generated}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return (await readFile(file, 'utf8')).trim();
    throw error;
  }
  // Once, in the message itself: the redaction of secret-carrying fields does not hide it from the one who must copy it.
  logger.warn(
    { variable: secret.variable, keptIn: file },
    `${secret.variable} was not set, so ci_service generated one and keeps it in ${file}: ${generated} — ${secret.use}. Set ${secret.variable} to use your own.`,
  );
  return generated;
}
