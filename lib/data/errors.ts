/**
 * A problem with input data (a file that is missing, truncated, of the wrong kind or the wrong
 * size for the model). `file` names the offending file or folder; the message names it too.
 */
export class DataError extends Error {
  override name = 'DataError';
  readonly file: string | undefined;

  constructor(message: string, file?: string, options?: { cause?: unknown }) {
    super(file === undefined ? message : `${file}: ${message}`, options);
    this.file = file;
  }
}

/** The message of anything thrown, on one line. */
export function describeError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s*\n\s*/g, '; ').trim();
}
