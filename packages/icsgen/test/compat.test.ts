import { describe, expect, it } from 'vitest';
import { checkCompatibility } from '../src/index.js';
import { virtual } from './helpers.js';

const OLD = `
enum Color { red, green }
struct Entry {
  key: string
  value: bytes
  ttl?: uint
  color: Color
  children: Entry[]
}
service Kv channel app subservice 1 {
  rpc get(key: string): Entry?
  rpc put(entry: Entry, force?: bool): void
  rpc size(): uint
  msg drop(key: string)
}
service Gone subservice 2 { rpc ping(): void }
`;

function changes(newer: string, older = OLD, extra: Record<string, string> = {}): string[] {
  const r = checkCompatibility('old.ics', 'new.ics', virtual({ 'old.ics': older, 'new.ics': newer, ...extra }));
  expect(r.errors).toEqual([]);
  return r.changes.map((c) => `${c.kind} ${c.message} @${c.at.file}:${c.at.line}`);
}

/** OLD with the Gone service kept, so that each test shows only its own change. */
const keep = (s: string): string => `${s}\nservice Gone subservice 2 { rpc ping(): void }`;
const KV_BODY = OLD.slice(0, OLD.indexOf('service Gone'));

describe('icsgen --against: breaking changes', () => {
  it('none when nothing changed, or only compatible additions and renames', () => {
    expect(changes(OLD)).toEqual([]);
    const compatible = keep(
      KV_BODY.replace('ttl?: uint', 'ttl?: uint\n  note?: string') // optional field added
        .replace('rpc size(): uint', 'idempotent rpc size(): uint\n  rpc extra(): void') // method added, idempotent
        .replace('rpc get(key: string)', 'rpc get(key: string, hint?: string)') // optional argument added
        .replace(/Entry/g, 'Item'), // a renamed struct: names do not go on the wire
    );
    expect(changes(compatible)).toEqual([]);
  });

  it('lists removed services, methods and fields, and changed addresses', () => {
    const newer = KV_BODY.replace('channel app subservice 1', 'channel app subservice 9').replace('  msg drop(key: string)\n', '').replace('  ttl?: uint\n', '');
    expect(changes(newer)).toEqual([
      'ADDRESS_CHANGED Kv: address changed from channel app subservice 1 to channel app subservice 9 @new.ics:9',
      'FIELD_REMOVED Kv.get result.ttl: field removed @old.ics:6',
      'METHOD_REMOVED Kv.drop: method removed @old.ics:14',
      'SERVICE_REMOVED Gone: service removed @old.ics:16',
    ]);
  });

  it('lists changed types, optional → required, required additions, and kind changes', () => {
    const newer = keep(
      KV_BODY.replace('value: bytes', 'value: string')
        .replace('ttl?: uint', 'ttl: uint')
        .replace('children: Entry[]', 'children: Entry[]\n  owner: string')
        .replace('rpc get(key: string): Entry?', 'rpc get(key: string): Entry')
        .replace('rpc put(entry: Entry, force?: bool)', 'rpc put(entry: Entry, force?: bool, mode: int)')
        .replace('msg drop(key: string)', 'rpc drop(key: string): void'),
    );
    expect(changes(newer)).toEqual([
      'TYPE_CHANGED Kv.get result: type changed from Entry? to Entry @new.ics:12',
      'TYPE_CHANGED Kv.get result.value: type changed from bytes to string @new.ics:5',
      'OPTIONAL_TO_REQUIRED Kv.get result.ttl: field changed from optional to required (old peers may leave it out) @new.ics:6',
      'FIELD_ADDED_REQUIRED Kv.get result.owner: required field added to Entry (old peers do not send it); make it optional @new.ics:9',
      'FIELD_ADDED_REQUIRED Kv.put(mode): required argument added to Kv.put (old peers do not send it); make it optional @new.ics:13',
      'KIND_CHANGED Kv.drop: changed from msg to rpc @new.ics:15',
    ]);
  });

  it('enum values removed or added', () => {
    expect(changes(keep(KV_BODY.replace('enum Color { red, green }', 'enum Color { red, blue }')))).toEqual([
      "ENUM_VALUE_REMOVED Kv.get result.color: enum Color lost value 'green' @new.ics:2",
      "ENUM_VALUE_ADDED Kv.get result.color: enum Color gained value 'blue' (old peers refuse it) @new.ics:2",
    ]);
  });

  it('compares types by structure across imports', () => {
    const split = keep(KV_BODY.replace(/enum Color[^\n]*\n/, 'import "color.ics"\n'));
    expect(changes(split, OLD, { 'color.ics': 'enum Color { red, green }' })).toEqual([]);
    expect(changes(split, OLD, { 'color.ics': 'struct Color { red: int }' })).toEqual(['TYPE_CHANGED Kv.get result.color: type changed from Color to Color @new.ics:7']);
  });

  it('key services: a service turned keyservice, and changed pull or handover data (old and new hosts exchange it)', () => {
    const ks = (body: string): string => keep(`${KV_BODY}\nkeyservice Ledger subservice 4 {\n${body}\n  rpc get(): int\n}`);
    const before = ks('  pull: map<int>\n  handover: int[]');
    expect(changes(before, before)).toEqual([]);
    expect(changes(ks('  pull: map<uint>\n  handover: int[]'), before)).toEqual(['TYPE_CHANGED Ledger pull{}: type changed from int to uint @new.ics:18']);
    expect(changes(ks('  pull: map<int>'), before)).toEqual(['TYPE_CHANGED Ledger handover: type changed from int[] to nothing @new.ics:17']);
    const asService = keep(`${KV_BODY}\nservice Ledger channel keyservice subservice 4 {\n  rpc get(): int\n}`);
    expect(changes(asService, before)).toEqual(['KIND_CHANGED Ledger: changed from keyservice to service @new.ics:17']);
  });

  it('reports IDL errors in either file instead of comparing', () => {
    const r = checkCompatibility('old.ics', 'new.ics', virtual({ 'old.ics': OLD, 'new.ics': 'struct {' }));
    expect(r.errors.map((e) => `${e.file}:${e.line}:${e.col} ${e.code}`)).toEqual(['new.ics:1:8 ICSGEN_ERR_SYNTAX']);
  });
});
