import { randomBytes } from 'node:crypto';
import { link, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readKeptFile } from '../kept-secrets.js';
import { checkAppPrivateKey, type GitHubApp } from './github-auth.js';

/** The file under DATA_DIR that keeps the App /setup made (0600, like the generated secrets). */
export const KEPT_APP_FILE = 'github-app.json';

const FIX = `delete it and make the App again at /setup, or set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY`;

/** The App /setup made and kept under `dataDir`, or undefined when there is none. */
export async function keptApp(dataDir: string): Promise<GitHubApp | undefined> {
  const file = path.join(dataDir, KEPT_APP_FILE);
  let text: string;
  try {
    text = await readKeptFile(file, "the GitHub App's file", FIX, 64 * 1024);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let app: GitHubApp;
  try {
    app = JSON.parse(text) as GitHubApp;
  } catch {
    throw new Error(`${file} is not valid JSON: ${FIX}`);
  }
  if (typeof app.id !== 'string' || typeof app.privateKey !== 'string') throw new Error(`${file} does not name an App id and key: ${FIX}`);
  checkAppPrivateKey(app.privateKey, `the private key in ${file}`);
  return app;
}

/**
 * Keeps the App GitHub made from the manifest. Written whole under a name of its own, then linked into place: it
 * appears complete or not at all, and never replaces an App kept before (a second conversion is refused).
 */
export async function keepApp(dataDir: string, app: GitHubApp): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const file = path.join(dataDir, KEPT_APP_FILE);
  const draft = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(draft, `${JSON.stringify(app, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await link(draft, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`a GitHub App is already kept in ${file}: delete it first to make another`);
    throw error;
  } finally {
    await rm(draft, { force: true });
  }
}
