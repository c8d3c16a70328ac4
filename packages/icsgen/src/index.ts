// The public API of @clusterinfra/icsgen, chosen name by name.
export {
  checkCompatibility,
  checkGenerated,
  generate,
  writeGenerated,
  type CompatibilityResult,
  type GeneratedFile,
  type GenerateOptions,
  type GenerateResult,
  type StaleFile,
} from './api.js';
export { BREAKING_CHANGE_KINDS, type BreakingChange, type BreakingChangeKind } from './compat.js';
export { formatError, ICSGEN_ERROR_CODES, IcsgenError, type IcsgenErrorCode, type SourcePosition } from './errors.js';
export { parse, type ParseResult } from './parser.js';
export { loadProgram, type LoadedFile, type LoadOptions, type Program, type ReadFile } from './resolve.js';
export { runCli, type CliIo } from './cli/run.js';
export type {
  BuiltinName,
  Decl,
  EnumDecl,
  EnumMember,
  FieldDecl,
  IcsFile,
  ImportDecl,
  MethodDecl,
  ServiceDecl,
  StructDecl,
  TypeDecl,
  TypeExpr,
} from './ast.js';
