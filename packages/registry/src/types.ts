/** What the registry stores and streams. */

/** Plain data: what JSON can carry. */
export type PlainValue = null | boolean | number | string | PlainValue[] | { [key: string]: PlainValue };

/** The incarnation that owns an entry: the entry goes when that incarnation goes down. */
export interface Owner {
  readonly node: number;
  readonly incarnation: number;
}

export interface Entry {
  readonly key: string;
  readonly value: PlainValue;
  /** The revision of the write that set it: grows with every write to the key, across sequencer failovers. */
  readonly version: number;
  /** Set on owned entries (`put(..., { owned: true })`). */
  readonly owner?: Owner;
}

/**
 * One sequenced change. `epoch` is the sequencer's key-service epoch and
 * `seq` counts its changes from 1; a replica applies them in (epoch, seq)
 * order with no gap, so every replica is a prefix of one history.
 */
export interface Change {
  readonly epoch: number;
  readonly seq: number;
  readonly kind: 'put' | 'delete';
  readonly key: string;
  readonly value?: PlainValue;
  readonly owner?: Owner;
  /** `owner-down`: the sequencer removed an owned entry because its owner went down. */
  readonly cause: 'write' | 'owner-down';
}

/** A whole map at one point of the history: every entry after change (epoch, seq). */
export interface Snapshot {
  readonly epoch: number;
  readonly seq: number;
  readonly entries: readonly Entry[];
}

/** What `watch()` yields and the `change` event carries, in apply order. */
export type RegistryEvent =
  | {
      readonly type: 'put';
      readonly key: string;
      readonly value: PlainValue;
      readonly version: number;
      readonly owner?: Owner;
      /** The entry it replaced, if any. */
      readonly previous?: Entry;
      /** `write`: a sequenced write; `sync`: this node installed a snapshot (it joined, resynced, or the sequencer failed over); `initial`: the watcher's first view. */
      readonly cause: 'write' | 'sync' | 'initial';
    }
  | {
      readonly type: 'delete';
      readonly key: string;
      /** The revision at which the entry was removed. */
      readonly version: number;
      readonly previous: Entry;
      readonly cause: 'write' | 'owner-down' | 'sync';
    };

/** A write, as the sequencer receives it. */
export type WriteOp =
  | { readonly kind: 'put'; readonly key: string; readonly value: PlainValue; readonly expectVersion?: number; readonly owned?: boolean }
  | { readonly kind: 'delete'; readonly key: string; readonly expectVersion?: number };

/**
 * Versions are revisions: `epoch * 2^32 + seq`. A newer sequencer's first
 * write is above every revision an older one gave, so a version never
 * repeats with another meaning, even for a write only a lost node had.
 */
export const SEQ_SPACE = 2 ** 32;

export function revision(epoch: number, seq: number): number {
  return epoch * SEQ_SPACE + seq;
}
