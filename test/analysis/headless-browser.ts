import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable, Writable } from 'node:stream';

/**
 * A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
 * NUL-terminated JSON on fds 3 and 4), so the test needs no npm browser driver.
 */

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable', 'chrome'];

/** The browser executable: $PTQ4VM_BROWSER or $CHROME_PATH, else the first candidate on PATH; null when none. */
export function findBrowser(): string | null {
  for (const env of [process.env.PTQ4VM_BROWSER, process.env.CHROME_PATH]) if (env && executable(env)) return env;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of CANDIDATES) {
      const p = join(dir, name);
      if (dir && executable(p)) return p;
    }
  }
  return null;
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface PageLoad {
  /** Every <img> of the page after the load event. */
  images: { src: string; complete: boolean; naturalWidth: number; naturalHeight: number }[];
  /** URL of every request the page made (the document included). */
  requests: string[];
  title: string;
}

interface Message { id?: number; method?: string; params?: Record<string, unknown>; result?: Record<string, unknown>; error?: { message: string }; sessionId?: string }

/** Opens `file` in a fresh headless browser with networking disabled, waits for its load event, reports its images and requests. */
export async function loadPage(browser: string, file: string, timeoutMs = 60000): Promise<PageLoad> {
  const profile = mkdtempSync(join(tmpdir(), 'ptq4vm-chromium-'));
  const proc: ChildProcess = spawn(browser, [
    '--headless=new', '--remote-debugging-pipe', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--disable-background-networking',
    '--proxy-server=127.0.0.1:9', '--host-resolver-rules=MAP * ~NOTFOUND', `--user-data-dir=${profile}`, 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const toBrowser = proc.stdio[3] as Writable;
  const fromBrowser = proc.stdio[4] as Readable;
  const pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  const listeners: ((m: Message) => void)[] = [];
  let buffer = '';
  let nextId = 1;
  let failure: Error | null = null;
  let rejectFailed: (e: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => { rejectFailed = reject; });
  failed.catch(() => undefined);
  const fail = (e: Error) => {
    failure ??= e;
    rejectFailed(failure);
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  fromBrowser.on('data', (d: Buffer) => {
    buffer += d.toString('utf8');
    let end;
    while ((end = buffer.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buffer.slice(0, end)) as Message;
      buffer = buffer.slice(end + 1);
      if (msg.id !== undefined && pending.has(msg.id)) {
        const p = pending.get(msg.id)!;
        pending.delete(msg.id);
        if (msg.error) p.reject(new Error(`CDP: ${msg.error.message}`));
        else p.resolve(msg);
      } else {
        for (const l of listeners) l(msg);
      }
    }
  });
  proc.on('exit', (code) => fail(new Error(`browser exited (${code}) before the page loaded: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)));
  proc.on('error', (e) => fail(e));
  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Message> => {
    if (failure) return Promise.reject(failure);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  };
  const timer = setTimeout(() => fail(new Error(`page did not load within ${timeoutMs} ms`)), timeoutMs);
  try {
    const target = await send('Target.createTarget', { url: 'about:blank' });
    const attached = await send('Target.attachToTarget', { targetId: target.result!.targetId, flatten: true });
    const sessionId = attached.result!.sessionId as string;
    const requests: string[] = [];
    let loaded: () => void = () => undefined;
    const loadEvent = new Promise<void>((resolve) => { loaded = resolve; });
    listeners.push((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === 'Network.requestWillBeSent') requests.push(String((m.params!.request as { url: string }).url));
      if (m.method === 'Page.loadEventFired') loaded();
    });
    await send('Network.enable', {}, sessionId);
    await send('Page.enable', {}, sessionId);
    await send('Page.navigate', { url: pathToFileURL(file).href }, sessionId);
    await Promise.race([loadEvent, failed]);
    const evaluated = await send('Runtime.evaluate', {
      expression: 'JSON.stringify({title: document.title, images: Array.from(document.images, (i) => ({src: i.currentSrc || i.src, complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))})',
      returnByValue: true,
    }, sessionId);
    const value = JSON.parse((evaluated.result!.result as { value: string }).value) as { title: string; images: PageLoad['images'] };
    await send('Browser.close').catch(() => undefined);
    return { images: value.images, requests, title: value.title };
  } finally {
    clearTimeout(timer);
    // The browser may still be flushing its profile: wait for it to be gone before deleting it.
    const grace = setTimeout(() => proc.kill('SIGKILL'), 5000);
    if (proc.exitCode === null && proc.signalCode === null) await exited;
    clearTimeout(grace);
    rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
  }
}
