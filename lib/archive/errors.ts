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

/**
 * A message quoting names from a hostile archive, safe to print on a
 * terminal: control characters (escape sequences among them) show as \xNN,
 * bytes that were not UTF-8 as \x??.
 */
function printable(message: string): string {
  return message.replace(/[\x00-\x1f\x7f-\x9f\ufffd]/g, (c) => (c === '\ufffd' ? '\\x??' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/** Turns an error from the native archive code into an ArchiveError; others pass through. */
export function toArchiveError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof ArchiveError) return error;
  const { code, entry } = error as Error & { code?: unknown; entry?: unknown };
  if (typeof code !== 'string' || !/^ERR_(ARCHIVE|LAYER)_/.test(code)) return error;
  const converted = new ArchiveError(code, printable(error.message), {
    ...(typeof entry === 'string' ? { entry } : {}),
    cause: (error as Error & { cause?: unknown }).cause ?? error,
  });
  converted.stack = error.stack;
  return converted;
}
