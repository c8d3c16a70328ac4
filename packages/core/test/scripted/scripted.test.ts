/**
 * Runs every script in this folder (docs/testing.md, "Scripted protocol
 * tests"): each block's command is run on a fresh cluster of protocol
 * cores per file, and its output must equal the expected output.
 * `REWRITE=1 npx vitest run packages/core/test/scripted` writes the actual
 * output into the files instead (review the diff before committing).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Cluster, type Block, parseScript, renderScript } from './harness.js';

const DIR = fileURLToPath(new URL('.', import.meta.url));
const scripts = readdirSync(DIR).filter((f) => f.endsWith('.txt')).sort();

/** Run a script; the blocks whose output differs, with what came out. */
function runScript(text: string): { blocks: Block[]; actual: string[]; mismatches: string[] } {
  const blocks = parseScript(text);
  const cluster = new Cluster();
  const actual: string[] = [];
  const mismatches: string[] = [];
  for (const b of blocks) {
    let out: string;
    try {
      out = cluster.run(b.command);
    } catch (err) {
      out = `error: ${(err as Error).message}`;
    }
    actual.push(out);
    if (out !== b.expected) mismatches.push(`line ${b.line}: ${b.command}\n--- expected\n${b.expected}\n--- actual\n${out}`);
  }
  return { blocks, actual, mismatches };
}

describe('scripted protocol tests', () => {
  it('has scripts', () => {
    expect(scripts.length).toBeGreaterThan(0);
  });

  for (const file of scripts) {
    it(file, () => {
      const path = `${DIR}${file}`;
      const { blocks, actual, mismatches } = runScript(readFileSync(path, 'utf8'));
      if (process.env.REWRITE === '1') {
        writeFileSync(path, renderScript(blocks, actual));
        return;
      }
      expect(mismatches.join('\n\n')).toBe('');
    });
  }

  it('fails a script whose expected output is wrong', () => {
    const good = 'nodes 3\n----\nok\n\nstatus 2\n----\n2: term=0 voted=0 master=- phase=joining last=0 pending=- quorum=no\n';
    expect(runScript(good).mismatches).toEqual([]);
    const wrong = good.replace('term=0 voted', 'term=7 voted');
    const { mismatches } = runScript(wrong);
    expect(mismatches).toHaveLength(1);
    expect(mismatches[0]).toContain('line 5: status 2');
  });

  it('reports an unknown command as output, and a block without ---- as an error', () => {
    expect(runScript('nodes 1\n----\nok\n\nfly 1\n----\nok\n').mismatches[0]).toContain('error: unknown command "fly"');
    expect(() => parseScript('nodes 1\nok\n')).toThrow(/not followed by ----/);
  });

  it('renders a script back as it was read', () => {
    const text = '# a comment\nnodes 2\n----\nok\n\nstatus 1\n----\n1: term=0 voted=0 master=- phase=joining last=0 pending=- quorum=no\n';
    const { blocks, actual } = runScript(text);
    expect(renderScript(blocks, actual)).toBe(text);
  });
});
