import { execFile, spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureBusyboxImage } from '../support/docker-environment.js';

const run = promisify(execFile);

/**
 * This machine cannot pull from Docker Hub, so the smoke test stands in for the base images the
 * compose file and the Dockerfiles name, with images made here. An image that is already present
 * (a real one) is used as it is and left alone.
 */
export interface StandIn {
  image: string;
  how: string;
  make: () => Promise<void>;
}

export const STAND_INS: StandIn[] = [
  {
    image: 'node:24-bookworm-slim',
    how: "a debootstrapped Debian bookworm with this machine's Node.js, npm, Node headers and CA certificates",
    make: makeNodeImage,
  },
  { image: 'registry:2', how: "Debian's docker-registry (the same code as registry:2) and busybox", make: makeRegistryImage },
  { image: 'busybox:1.36', how: "Debian's static busybox", make: async () => void (await ensureBusyboxImage('busybox:1.36')) },
];

export async function imageExists(image: string): Promise<boolean> {
  try {
    await run('docker', ['image', 'inspect', image]);
    return true;
  } catch {
    return false;
  }
}

async function importRootfs(dir: string, image: string, changes: string[]): Promise<void> {
  const args = ['import', ...changes.flatMap((change) => ['--change', change]), '-', image];
  await new Promise<void>((resolve, reject) => {
    const tar = spawn('tar', ['-C', dir, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const docker = spawn('docker', args, { stdio: ['pipe', 'ignore', 'inherit'] });
    tar.stdout.pipe(docker.stdin);
    docker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`docker import ${image} exited ${code}`))));
  });
}

async function makeNodeImage(): Promise<void> {
  // The stand-in is this machine's Node: it may only stand in for the line ci_service/Dockerfile names.
  if (!process.version.startsWith('v24.')) throw new Error(`node:24-bookworm-slim cannot be stood in for by Node ${process.version}: run with Node 24 (.ci/run installs it)`);
  const dir = await mkdtemp(path.join(tmpdir(), 'node-rootfs-'));
  try {
    await run('debootstrap', ['--variant=minbase', 'bookworm', dir, 'http://deb.debian.org/debian'], { maxBuffer: 64 * 1024 * 1024 });
    // npm as it is installed, wherever that is: `npm root -g` names the running Node's prefix, which need not hold
    // npm (Node 24 from the npm registry's package comes without it; .ci/run uses the machine's npm with it).
    const npmCli = realpathSync((await run('sh', ['-c', 'command -v npm'])).stdout.trim());
    const npmRoot = path.dirname(path.dirname(path.dirname(npmCli)));
    await mkdir(path.join(dir, 'usr/local/lib/node_modules'), { recursive: true });
    await cp(process.execPath, path.join(dir, 'usr/local/bin/node'));
    await cp(path.join(npmRoot, 'npm'), path.join(dir, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', path.join(dir, 'usr/local/bin/npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', path.join(dir, 'usr/local/bin/npx'));
    const headers = path.join(path.dirname(path.dirname(process.execPath)), 'include/node');
    await cp(headers, path.join(dir, 'usr/local/include/node'), { recursive: true });
    // This machine reaches the npm registry through a TLS proxy with its own CA: the stand-in trusts what the machine trusts.
    await mkdir(path.join(dir, 'usr/local/share/stand-in'), { recursive: true });
    await cp('/etc/ssl/certs/ca-certificates.crt', path.join(dir, 'usr/local/share/stand-in/ca-certificates.crt'));
    await run('chroot', [dir, 'sh', '-c', 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node']);
    await importRootfs(dir, 'node:24-bookworm-slim', [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      // node-gyp finds the headers here instead of downloading them.
      'ENV npm_config_nodedir=/usr/local',
      'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/stand-in/ca-certificates.crt',
      'CMD ["node"]',
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function makeRegistryImage(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'registry-rootfs-'));
  try {
    const binary = (await run('sh', ['-c', 'command -v docker-registry'])).stdout.trim();
    await mkdir(path.join(dir, 'bin'), { recursive: true });
    await cp(binary, path.join(dir, 'bin/registry'));
    for (const library of await sharedLibraries(binary)) {
      await mkdir(path.join(dir, path.dirname(library)), { recursive: true });
      await cp(library, path.join(dir, library), { dereference: true });
    }
    await cp('/bin/busybox', path.join(dir, 'bin/busybox'));
    for (const applet of ['sh', 'wget']) await symlink('busybox', path.join(dir, 'bin', applet));
    await mkdir(path.join(dir, 'etc/docker/registry'), { recursive: true });
    await mkdir(path.join(dir, 'var/lib/registry'), { recursive: true });
    await writeFile(
      path.join(dir, 'etc/docker/registry/config.yml'),
      'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n',
    );
    await importRootfs(dir, 'registry:2', ['EXPOSE 5000', 'VOLUME /var/lib/registry', 'CMD ["/bin/registry", "serve", "/etc/docker/registry/config.yml"]']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The shared libraries a binary loads, as absolute paths (ldd's view). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  return [...new Set(stdout.split('\n').flatMap((line) => line.match(/\/\S+/g) ?? []))];
}
