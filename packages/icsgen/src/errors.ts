/**
 * icsgen's errors are data: a stable, namespaced `code`, a position in an
 * IDL file, and the text of the line so a caller can print it without
 * reading the file again. The CLI prints them as `file:line:col: message`
 * with a caret line (formatError) and never a stack trace.
 *
 * Codes are never reused; docs/icsgen.md has a row per code and a test
 * fails when the two disagree.
 */
export const ICSGEN_ERROR_CODES = [
  /** The text is not in the grammar (or not UTF-8); the message says what was expected. */
  'ICSGEN_ERR_SYNTAX',
  /** A type name that no enum or struct of the file or its imports declares. */
  'ICSGEN_ERR_UNKNOWN_TYPE',
  /** Two declarations, fields, arguments, methods or enum members share a name (or a generated name). */
  'ICSGEN_ERR_DUPLICATE_NAME',
  /** Two services of one run use the same channel and subservice. */
  'ICSGEN_ERR_DUPLICATE_SERVICE',
  /** A file imports itself, directly or through other files. */
  'ICSGEN_ERR_IMPORT_CYCLE',
  /** An input or imported file cannot be read. */
  'ICSGEN_ERR_FILE_NOT_FOUND',
  /** A name that the IDL, TypeScript or the generated code reserves. */
  'ICSGEN_ERR_RESERVED_WORD',
  /** A number or name outside what ICS accepts (subservice 0–65535, 1–65535 for a key service; channel name length; types nested past 32 levels). */
  'ICSGEN_ERR_OUT_OF_RANGE',
  /** Two input files would generate the same output file name. */
  'ICSGEN_ERR_OUTPUT_CONFLICT',
] as const;

export type IcsgenErrorCode = (typeof ICSGEN_ERROR_CODES)[number];

/** Where something is in an IDL file. Lines and columns start at 1. */
export interface SourcePosition {
  /** The file as it is shown to the user (relative to the working directory). */
  file: string;
  line: number;
  col: number;
  /** How many characters the caret line underlines. */
  length: number;
  /** The text of the line, for the caret display. Empty when unknown. */
  sourceLine: string;
}

export class IcsgenError extends Error {
  override readonly name = 'IcsgenError';
  readonly code: IcsgenErrorCode;
  readonly file: string;
  /** 1-based; 0 when the error is about the whole file (it cannot be read). */
  readonly line: number;
  readonly col: number;
  readonly length: number;
  readonly sourceLine: string;
  /** A bad IDL file is not fixed by trying again. */
  readonly retryable = false;

  constructor(code: IcsgenErrorCode, message: string, at: SourcePosition, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.file = at.file;
    this.line = at.line;
    this.col = at.col;
    this.length = at.length;
    this.sourceLine = at.sourceLine;
  }
}

/**
 * `file:line:col: message`, then the line and a caret under the culprit.
 * Takes an IcsgenError or anything else with a position (a breaking change).
 */
export function formatError(error: SourcePosition & { message: string }): string {
  if (error.line === 0) return `${error.file}: ${error.message}`;
  const head = `${error.file}:${error.line}:${error.col}: ${error.message}`;
  if (error.sourceLine === '') return head;
  // Keep tabs so the caret lines up under tab-indented text.
  const pad = error.sourceLine.slice(0, error.col - 1).replace(/[^\t]/g, ' ');
  return `${head}\n  ${error.sourceLine}\n  ${pad}${'^'.repeat(Math.max(1, error.length))}`;
}
