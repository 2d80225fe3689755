/**
 * Errors raised for bad model files. Every message is a single line naming the file (and the
 * tensor, entry or pickle offset where that applies), so a CLI can print it as is and exit 1.
 */
export class ModelFileError extends Error {
  override name = 'ModelFileError';
  /** The file (or in-memory source) the problem was found in. */
  readonly file: string;

  constructor(file: string, message: string) {
    // Names inside messages come from untrusted files: keep the message on one line.
    super(`${file}: ${message}`.replace(/[\r\n]+/g, ' '));
    this.file = file;
  }
}

export class SafetensorsError extends ModelFileError {
  override name = 'SafetensorsError';
}

/** A JSON-quoted name, safe to embed in a one-line message whatever bytes it holds. */
export function quote(name: string, max = 200): string {
  const q = JSON.stringify(name.length > max ? name.slice(0, max) + '…' : name);
  return q;
}
