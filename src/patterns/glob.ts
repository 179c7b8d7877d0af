import { RE2JS } from 're2js';

/**
 * Globs matched in linear time. Patterns come from repositories (COPY sources, .dockerignore, release rules), and
 * a backtracking matcher lets one pattern hold the only event loop for seconds (`*a*a*a…b` against a name of 30
 * a's: 2.2 s, tripling every 2 characters). Each glob is translated to a regular expression and run by RE2's
 * automaton (re2js), whose time grows with the name's length only.
 */

/** More than this, or a longer pattern, is refused: a pattern's cost is bounded by its length, and the count by this. */
export const MAX_PATTERNS = 1000;
export const MAX_PATTERN_CHARS = 1024;

export class PatternError extends Error {}

export interface Glob {
  matches(name: string): boolean;
}

/**
 * `*` any run of characters but '/', `?` one such character, `[…]` a class (`[!…]` or `[^…]` negated), `\x` a
 * literal x, a double star any run including '/' (followed by '/', also no folder at all, as in moby's
 * patternmatcher); with `braces`, `{a,b}` either (as picomatch, for git tags). Everything else is literal.
 */
export function compileGlob(pattern: string, options: { braces?: boolean } = {}): Glob {
  if (pattern.length > MAX_PATTERN_CHARS) throw new PatternError(`pattern "${pattern.slice(0, 40)}…" is longer than ${MAX_PATTERN_CHARS} characters`);
  const source = translate(pattern, options.braces ?? false);
  try {
    const compiled = RE2JS.compile(source);
    return { matches: (name) => compiled.matches(name) };
  } catch (error) {
    throw new PatternError(`pattern "${pattern}" is not a valid glob (${error instanceof Error ? error.message : String(error)})`);
  }
}

/** Refuses a list of patterns longer than MAX_PATTERNS, naming what the list is. */
export function checkPatternCount(patterns: readonly string[], what: string): void {
  if (patterns.length > MAX_PATTERNS) throw new PatternError(`${what}: ${patterns.length} patterns, more than the ${MAX_PATTERNS} ci_service matches`);
}

function translate(pattern: string, braces: boolean): string {
  let out = '';
  let i = 0;
  while (i < pattern.length) {
    const ch = pattern[i]!;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i += 2;
        if (pattern[i] === '/') i += 1;
        out += i >= pattern.length ? '.*' : '(?:.*/)?';
        continue;
      }
      out += '[^/]*';
    } else if (ch === '?') {
      out += '[^/]';
    } else if (ch === '\\' && i + 1 < pattern.length) {
      i += 1;
      out += RE2JS.quote(pattern[i]!);
    } else if (ch === '[') {
      const end = classEnd(pattern, i);
      if (end === -1) {
        out += '\\[';
      } else {
        out += characterClass(pattern.slice(i + 1, end));
        i = end;
      }
    } else if (ch === '{' && braces) {
      const alternatives = braceAlternatives(pattern, i);
      if (alternatives === undefined) {
        out += '\\{';
      } else {
        out += `(?:${alternatives.parts.map((part) => translate(part, true)).join('|')})`;
        i = alternatives.end;
      }
    } else {
      out += RE2JS.quote(ch);
    }
    i += 1;
  }
  return out;
}

/** The index of the `]` closing the class opened at `start`, or -1: a `]` right after `[`, `[!` or `[^` is literal. */
function classEnd(pattern: string, start: number): number {
  let i = start + 1;
  if (pattern[i] === '!' || pattern[i] === '^') i += 1;
  if (pattern[i] === ']') i += 1;
  for (; i < pattern.length; i += 1) {
    if (pattern[i] === '\\') i += 1;
    else if (pattern[i] === ']') return i;
  }
  return -1;
}

/** A class's body as RE2 takes it: negation as `^`, and every character but a range's `-` escaped. */
function characterClass(body: string): string {
  let out = '[';
  let i = 0;
  if (body[0] === '!' || body[0] === '^') {
    out += '^/';
    i = 1;
  }
  for (; i < body.length; i += 1) {
    const ch = body[i]!;
    if (ch === '\\' && i + 1 < body.length) {
      i += 1;
      out += `\\x{${body.codePointAt(i)!.toString(16)}}`;
    } else if (ch === '-' && i > 0 && i < body.length - 1) {
      out += '-';
    } else {
      out += `\\x{${ch.codePointAt(0)!.toString(16)}}`;
    }
  }
  return `${out}]`;
}

/** `{a,b{c,d}}` from `start`: its top-level alternatives and the index of its closing brace; undefined if unclosed. */
function braceAlternatives(pattern: string, start: number): { parts: string[]; end: number } | undefined {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (let i = start + 1; i < pattern.length; i += 1) {
    const ch = pattern[i]!;
    if (ch === '\\' && i + 1 < pattern.length) {
      current += ch + pattern[i + 1];
      i += 1;
    } else if (ch === '{') {
      depth += 1;
      current += ch;
    } else if (ch === '}' && depth > 0) {
      depth -= 1;
      current += ch;
    } else if (ch === '}') {
      parts.push(current);
      return parts.length > 1 ? { parts, end: i } : undefined;
    } else if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  return undefined;
}
