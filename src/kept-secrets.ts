import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, rm, writeFile } from 'node:fs/promises';
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
  use: 'rebuild and cancel, and (unless OPEN_PAGES) the pages, the builds API and /metrics need it: a bearer token (curl -H "Authorization: Bearer <token>"), or the password of basic auth in a browser',
};

/**
 * The secret the environment set; otherwise the one kept under DATA_DIR; otherwise a new one, kept there
 * (mode 0600) and printed once, as Jenkins does with its first admin password. Nobody has to type one.
 */
export async function keptSecret(secret: KeptSecret, configured: string | undefined, dataDir: string, logger: Logger): Promise<string> {
  if (configured) return configured;
  const file = path.join(dataDir, secret.file);
  const kept = await keptIn(file, secret).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (kept) return kept;
  const generated = randomBytes(32).toString('hex');
  await mkdir(dataDir, { recursive: true });
  // Written whole under a name of its own, then linked into place: the file appears with its content or not at
  // all, and a link never replaces one. So two processes starting at once end with the first one's secret, and
  // neither reads a file the other has created but not written yet.
  const draft = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(draft, `${generated}\n`, { mode: 0o600, flag: 'wx' });
    await link(draft, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return keptIn(file, secret);
    throw error;
  } finally {
    await rm(draft, { force: true });
  }
  // Once, in the message itself: the redaction of secret-carrying fields does not hide it from the one who must copy it.
  logger.warn(
    { variable: secret.variable, keptIn: file },
    `${secret.variable} was not set, so ci_service generated one and keeps it in ${file}: ${generated} — ${secret.use}. Set ${secret.variable} to use your own.`,
  );
  return generated;
}

/** Shorter than this, a kept secret is refused: ci_service generates 64 hex characters. */
const MIN_KEPT_CHARS = 32;
const MAX_KEPT_BYTES = 4096;

/**
 * The secret a file keeps, trusted only as ci_service would have written it: a regular file (a link is not
 * followed: it could point anywhere), owned by this user, readable by nobody else (0600), of at least 32
 * characters. Anything else refuses the start, saying what to do.
 */
async function keptIn(file: string, secret: KeptSecret): Promise<string> {
  const fix = `delete it (ci_service then generates a new ${secret.variable}), or set ${secret.variable}`;
  const text = (await readKeptFile(file, `a kept ${secret.variable}`, fix, MAX_KEPT_BYTES)).trim();
  if (text === '') throw new Error(`${file} is empty: ${fix}, or write one in it`);
  if (text.length < MIN_KEPT_CHARS) throw new Error(`${file} holds a ${secret.variable} of ${text.length} characters, fewer than ${MIN_KEPT_CHARS}: ${fix}`);
  return text;
}

/**
 * A file ci_service keeps a secret in, read only as ci_service would have written it: a regular file (a link is
 * not followed: it could point anywhere), owned by this user, readable by nobody else (0600), at most `maxBytes`.
 * Anything else throws, naming `what` the file is and how to `fix` it.
 */
export async function readKeptFile(file: string, what: string, fix: string, maxBytes: number): Promise<string> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw new Error(`${file} is a symbolic link, and ${what} must be a file of its own: ${fix}`);
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new Error(`${file} is not a regular file: ${fix}`);
    const uid = process.getuid?.();
    if (uid !== undefined && stats.uid !== uid) throw new Error(`${file} belongs to user ${stats.uid}, not to ci_service's user (${uid}): ${fix}, or chown it`);
    if ((stats.mode & 0o077) !== 0) throw new Error(`${file} may be read by others (mode ${(stats.mode & 0o777).toString(8)}): chmod 600 it, or ${fix}`);
    if (stats.size > maxBytes) throw new Error(`${file} is ${stats.size} bytes, more than ${what} holds: ${fix}`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
