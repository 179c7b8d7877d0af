import path from 'node:path';
import { checkPatternCount, compileGlob, type Glob } from './glob.js';

/**
 * .dockerignore's rules as moby's patternmatcher applies them, matched in linear time (glob.ts): patterns in order,
 * the last one that matches a path (or one of its parent folders) decides, `!pattern` keeps what an earlier line
 * excluded.
 */
export class DockerIgnore {
  private readonly rules: { glob: Glob; exception: boolean; pattern: string }[];

  constructor(patterns: readonly string[]) {
    checkPatternCount(patterns, '.dockerignore');
    this.rules = patterns
      .map((line) => line.trim())
      .filter((line) => line !== '' && line !== '!')
      .map((line) => {
        const exception = line.startsWith('!');
        const pattern = cleanPattern(exception ? line.slice(1).trim() : line);
        return { glob: compileGlob(pattern), exception, pattern };
      });
  }

  /** The patterns of the `!` lines, cleaned: what an excluded folder may still hold. */
  get exceptions(): string[] {
    return this.rules.filter((rule) => rule.exception).map((rule) => rule.pattern);
  }

  ignores(name: string): boolean {
    const parents = name.split('/').slice(0, -1);
    let excluded = false;
    for (const rule of this.rules) {
      // An exclusion cannot change what is excluded already, nor an exception what is not.
      if (rule.exception !== excluded) continue;
      let matched = rule.glob.matches(name);
      for (let depth = 1; !matched && depth <= parents.length; depth += 1) matched = rule.glob.matches(parents.slice(0, depth).join('/'));
      if (matched) excluded = !rule.exception;
    }
    return excluded;
  }
}

/** A pattern as moby cleans it: '/'-separated, no leading or trailing '/', no '.' or '..' steps left. */
export function cleanPattern(pattern: string): string {
  return path.posix.normalize(pattern).replace(/^\/+/, '').replace(/\/+$/, '');
}
