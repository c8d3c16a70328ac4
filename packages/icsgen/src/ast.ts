/** The syntax tree of one `.ics` file. Positions point into that file. */
import type { SourcePosition } from './errors.js';

export type Pos = SourcePosition;

export const BUILTIN_TYPES = ['bool', 'int', 'uint', 'float', 'bigint', 'string', 'bytes', 'any'] as const;
export type BuiltinName = (typeof BUILTIN_TYPES)[number];

export type TypeExpr =
  | { kind: 'builtin'; name: BuiltinName; pos: Pos }
  | { kind: 'ref'; name: string; pos: Pos }
  | { kind: 'array'; element: TypeExpr; pos: Pos }
  | { kind: 'map'; value: TypeExpr; pos: Pos }
  | { kind: 'nullable'; inner: TypeExpr; pos: Pos };

export interface EnumMember {
  name: string;
  pos: Pos;
  doc?: string;
}

export interface EnumDecl {
  kind: 'enum';
  name: string;
  pos: Pos;
  doc?: string;
  members: EnumMember[];
}

/** A struct field or a method argument. */
export interface FieldDecl {
  name: string;
  pos: Pos;
  doc?: string;
  /** `name?: T`: may be left out. */
  optional: boolean;
  type: TypeExpr;
}

export interface StructDecl {
  kind: 'struct';
  name: string;
  pos: Pos;
  doc?: string;
  fields: FieldDecl[];
}

export interface MethodDecl {
  name: string;
  pos: Pos;
  doc?: string;
  kind: 'rpc' | 'oneway';
  idempotent: boolean;
  args: FieldDecl[];
  /** The result of an rpc; `void` when it has none. Absent for one-way messages. */
  result?: TypeExpr | { kind: 'void'; pos: Pos };
  /** The whole `(...)` list, for errors about the argument list. */
  argsPos: Pos;
}

/** `pull: T` or `handover: T` in a key service: the type of what that callback returns. */
export interface KeyServiceData {
  type: TypeExpr;
  pos: Pos;
  doc?: string;
}

/** What a `keyservice` declaration adds to a service (its channel is always `keyservice`). */
export interface KeyServiceParts {
  /** What each survivor's `pullData` returns to the new host. */
  pull?: KeyServiceData;
  /** What the old host's `handover` returns to the new host on a clean leave. */
  handover?: KeyServiceData;
}

export interface ServiceDecl {
  kind: 'service';
  name: string;
  pos: Pos;
  doc?: string;
  channel: string;
  channelPos: Pos;
  subservice: number;
  subservicePos: Pos;
  methods: MethodDecl[];
  /** Set for a `keyservice` declaration: rpc methods only, on the `keyservice` channel. */
  keyService?: KeyServiceParts;
}

export type TypeDecl = EnumDecl | StructDecl;
export type Decl = TypeDecl | ServiceDecl;

export interface ImportDecl {
  path: string;
  pos: Pos;
}

export interface IcsFile {
  /** The file as shown to the user. */
  file: string;
  imports: ImportDecl[];
  decls: Decl[];
}
