/** Server defaults, in a module of their own so the CLI can print them without loading fastify. */
export const DEFAULTS = {
  maxBatch: 32,
  maxWaitMs: 5,
  maxQueue: 256,
  maxBodyBytes: 10 * 2 ** 20,
  defaultTopk: 5,
  /** Decoded pixels per image (25 MP: 75 MB of RGB while decoding). */
  maxPixels: 25_000_000,
  drainTimeoutMs: 30_000,
} as const;
