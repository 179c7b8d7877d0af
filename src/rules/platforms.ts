/**
 * Platforms as `dockerInfo.json`'s "platforms" names them and engines list them: `os/architecture[/variant]`, the
 * OCI image index's words. Pure.
 */

/** At most this many platforms per image: every one is a build of its own. */
export const MAX_PLATFORMS = 8;

export const PLATFORM_RULE = 'os/architecture[/variant], such as "linux/amd64" or "linux/arm64"';

/** Architectures (and their variants) that the OCI image spec and BuildKit know, for Linux images. */
const ARCHITECTURES: Record<string, string[]> = {
  amd64: ['', 'v2', 'v3', 'v4'],
  arm64: ['', 'v8'],
  arm: ['v5', 'v6', 'v7'],
  '386': [''],
  ppc64le: [''],
  s390x: [''],
  riscv64: [''],
  mips64le: [''],
  loong64: [''],
};

/** What people write, as the OCI spec spells it. */
const ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm/v7', armel: 'arm/v6', i386: '386' };

/**
 * `linux/arm64/v8` → `linux/arm64`, `linux/aarch64` → `linux/arm64`, `linux/arm` → `linux/arm/v7` (as BuildKit
 * reads them); undefined for anything that is not a Linux platform an engine could build.
 */
export function normalisePlatform(value: string): string | undefined {
  const [os, architecture, variant, ...rest] = value.trim().toLowerCase().split('/');
  if (os !== 'linux' || !architecture || rest.length > 0) return undefined;
  const [aliasedArchitecture, aliasedVariant] = (ALIASES[architecture] ?? architecture).split('/') as [string, string | undefined];
  const known = ARCHITECTURES[aliasedArchitecture];
  if (!known) return undefined;
  let chosen = variant ?? aliasedVariant ?? '';
  if (aliasedArchitecture === 'arm' && chosen === '') chosen = 'v7';
  if (!known.includes(chosen)) return undefined;
  // arm64's only variant is v8, and amd64's plain one is what everyone means: neither is spelt out.
  if (aliasedArchitecture === 'arm64') chosen = '';
  return [os, aliasedArchitecture, chosen].filter(Boolean).join('/');
}

/** The platforms an engine builds: natively, and only under QEMU's emulation. */
export interface BuildablePlatforms {
  native: string[];
  emulated: string[];
}

/**
 * How this engine would build `platform`: natively, emulated, or not at all. An engine lists `linux/amd64/v2` and
 * the like beside plain `linux/amd64`; a plain platform is matched by its own name.
 */
export function howBuilt(platform: string, engine: BuildablePlatforms): 'native' | 'emulated' | undefined {
  const normal = (list: string[]) => list.map((each) => normalisePlatform(each) ?? each);
  if (normal(engine.native).includes(platform)) return 'native';
  if (normal(engine.emulated).includes(platform)) return 'emulated';
  return undefined;
}

/** `linux/arm/v7` → `linux-arm-v7`: a platform inside a tag. */
export function platformSlug(platform: string): string {
  return platform.replace(/\//g, '-');
}
