import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Writes `path` atomically: `write` fills a temporary file in the same directory (so the final
 * rename cannot cross file systems), which is flushed and renamed over `path`. On any error the
 * temporary file is removed and `path` is left as it was, so no partial output ever exists.
 */
export async function writeFileAtomic(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(temp, 'wx', 0o644);
  let closed = false;
  try {
    await write(fh);
    await fh.sync();
    closed = true;
    await fh.close();
    await rename(temp, path);
  } catch (err) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Writes all of `bytes` at the file's current position (FileHandle.write may write less). */
export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    done += bytesWritten;
  }
}
