// Errors of layer archive import and export. `code` is ERR_ARCHIVE_* (the
// archive is bad or could not be applied) or ERR_LAYER_CONTENT_CHANGED (the
// directory no longer matches its tar-split on export).
export class ArchiveError extends Error {
  readonly code: string;
  readonly entry?: string;

  constructor(code: string, message: string, options: { entry?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ArchiveError';
    this.code = code;
    if (options.entry !== undefined) this.entry = options.entry;
  }
}

/** Turns an error from the native archive code into an ArchiveError; others pass through. */
export function toArchiveError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof ArchiveError) return error;
  const { code, entry } = error as Error & { code?: unknown; entry?: unknown };
  if (typeof code !== 'string' || !/^ERR_(ARCHIVE|LAYER)_/.test(code)) return error;
  const converted = new ArchiveError(code, error.message, {
    ...(typeof entry === 'string' ? { entry } : {}),
    cause: (error as Error & { cause?: unknown }).cause ?? error,
  });
  converted.stack = error.stack;
  return converted;
}
