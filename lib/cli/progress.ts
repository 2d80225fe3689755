/**
 * A progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise (logs).
 */
export class ProgressBar {
  private readonly label: string;
  private readonly total: number;
  private readonly tty: boolean;
  private readonly start = performance.now();
  private lastDecile = -1;
  private lastDraw = 0;
  private done = false;

  constructor(label: string, total: number, opts: { enabled?: boolean } = {}) {
    this.label = label;
    this.total = Math.max(1, total);
    this.tty = Boolean(process.stderr.isTTY) && opts.enabled !== false;
    if (opts.enabled === false) this.done = true;
  }

  update(value: number, extra = ''): void {
    if (this.done) return;
    const frac = Math.min(1, value / this.total);
    const elapsed = (performance.now() - this.start) / 1000;
    if (this.tty) {
      const now = performance.now();
      if (now - this.lastDraw < 80 && value < this.total) return;
      this.lastDraw = now;
      const width = 28;
      const filled = Math.round(frac * width);
      const eta = frac > 0 ? elapsed / frac - elapsed : 0;
      process.stderr.write(`\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${value}/${this.total} ${elapsed.toFixed(1)}s eta ${eta.toFixed(0)}s ${extra}\x1b[K`);
    } else {
      const decile = Math.floor(frac * 10);
      if (decile > this.lastDecile) {
        this.lastDecile = decile;
        process.stderr.write(`${this.label}: ${value}/${this.total} (${Math.round(frac * 100)}%) ${elapsed.toFixed(1)}s ${extra}\n`);
      }
    }
  }

  finish(message = ''): void {
    if (this.done) return;
    this.done = true;
    if (this.tty) process.stderr.write(`\r\x1b[K`);
    if (message) process.stderr.write(`${this.label}: ${message}\n`);
  }
}
