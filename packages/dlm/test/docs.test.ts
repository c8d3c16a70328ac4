/** docs/dlm.md keeps up with the code: a row per error code (with its class), a row per option (with its default). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as dlm from '../src/index.js';
import { DLM_DEFAULTS, DLM_ERROR_CODES, DlmError } from '../src/index.js';

const doc = readFileSync(fileURLToPath(new URL('../../../docs/dlm.md', import.meta.url)), 'utf8');
const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');

describe('docs/dlm.md', () => {
  it('has exactly one row per error code, naming the class that raises it', () => {
    const rows = [...doc.matchAll(/^\|\s*`(DLM_ERR_[A-Z_]+)`\s*\|\s*`(\w+)`\s*\|/gm)].map((m) => [m[1]!, m[2]!] as const);
    expect(rows.map(([c]) => c).sort()).toEqual(Object.keys(DLM_ERROR_CODES).sort());
    const classes = Object.entries(dlm).filter((e): e is [string, typeof DlmError] => typeof e[1] === 'function' && e[1].prototype instanceof DlmError);
    for (const [code, cls] of rows) {
      const C = classes.find(([name]) => name === cls)?.[1];
      expect(C, `class ${cls}`).toBeDefined();
      expect(new (C as unknown as new (m: string) => DlmError)('x').code).toBe(code);
    }
  });

  it('every DLM code named in the docs or the README exists', () => {
    for (const text of [doc, readme]) for (const m of text.matchAll(/\bDLM_ERR_[A-Z_]*[A-Z]\b/g)) expect(Object.keys(DLM_ERROR_CODES)).toContain(m[0]);
  });

  it('has a row per option with the default the code applies', () => {
    const rows = new Map([...doc.matchAll(/^\|\s*`(\w+)`\s*\|\s*([^|]+?)\s*\|/gm)].map((m) => [m[1]!, m[2]!]));
    for (const k of ['channel', 'subservice', 'band', 'maxLocks', 'maxResources', 'deadlockTimeoutMs', 'maxValueBytes', 'deliveryTimeoutMs'] as const) {
      const v = DLM_DEFAULTS[k];
      const cell = rows.get(k);
      expect(cell, `option ${k}`).toBeDefined();
      const shown = typeof v === 'string' ? `\`'${v}'\`` : k === 'subservice' ? `\`0x${v.toString(16)}\`` : String(v);
      expect(cell).toBe(shown);
    }
    for (const k of ['node', 'clock', 'logger', 'cleanupWaitMs']) expect(rows.has(k), `option ${k}`).toBe(true);
  });
});
