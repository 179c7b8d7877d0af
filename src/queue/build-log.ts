/** What the build log keeps of one build: 10 MB, then a line saying it was cut. */
export const MAX_LOG_BYTES = 10 * 1024 * 1024;

/** ci_service's own lines start with this; everything else is the build's output (BuildKit, the push). */
export const OWN_LINE_PREFIX = '[ci_service] ';

/**
 * Escape sequences (colours, cursor moves, terminal titles) and control characters other than a tab:
 * a build's output must not drive a reader's terminal or page.
 */
const CONTROL = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f\x9b]/g;

/** Pure: a line as a reader gets it. After a carriage return, what a terminal would show: the last part. */
export function cleanLine(text: string): string {
  const shown = text.slice(text.lastIndexOf('\r') + 1);
  return shown.replace(CONTROL, '');
}

/**
 * One build's log as it is written: lines cleaned, ci_service's own marked, and at most `maxBytes`; past
 * that, one line says the log was cut, and the rest is dropped (the build goes on).
 */
export class BuildLog {
  private bytes = 0;
  private cut = false;

  constructor(
    private readonly write: (line: string) => void,
    private readonly maxBytes = MAX_LOG_BYTES,
  ) {}

  /** A line of ci_service's own. */
  own(text: string): void {
    this.lines(text, OWN_LINE_PREFIX);
  }

  /** Output of the build or the push, as the engine sent it. */
  output(text: string): void {
    this.lines(text, '');
  }

  private lines(text: string, prefix: string): void {
    for (const line of text.split('\n')) {
      if (this.cut) return;
      const kept = prefix + cleanLine(line);
      const size = Buffer.byteLength(kept, 'utf8') + 1;
      if (this.bytes + size > this.maxBytes) {
        this.cut = true;
        this.write(`${OWN_LINE_PREFIX}the log was cut here: it reached ${Math.round(this.maxBytes / 1024 / 1024)} MB; the build goes on, and its outcome is recorded as usual`);
        return;
      }
      this.bytes += size;
      this.write(kept);
    }
  }
}
