/** Input that cannot feed the model (wrong shape, non-finite values, wrong precision for the file). */
export class InputError extends Error {
  override name = 'InputError';
}
