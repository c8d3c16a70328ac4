import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock/index.js';
import { type DeadlineEntry, Deadlines } from '../src/ics/deadlines.js';

interface Entry extends DeadlineEntry {
  name: string;
}

function entry(name: string): Entry {
  return { name, deadline: 0, dlPrev: undefined, dlNext: undefined, dlList: undefined };
}

/** Deadlines on a virtual clock, recording when each entry expired. */
function setup(): { clock: VirtualClock; deadlines: Deadlines<Entry>; expired: string[] } {
  const clock = new VirtualClock();
  const expired: string[] = [];
  const deadlines = new Deadlines<Entry>(clock, (e) => expired.push(`${e.name}@${clock.now()}`));
  return { clock, deadlines, expired };
}

describe('ICS deadlines (one timer per timeout length)', () => {
  it('expires each entry at its own deadline, not earlier and not later', async () => {
    const { clock, deadlines, expired } = setup();
    deadlines.add(entry('a'), clock.now(), 100);
    await clock.advance(30);
    deadlines.add(entry('b'), clock.now(), 100);
    deadlines.add(entry('c'), clock.now(), 50);
    await clock.advance(49);
    expect(expired).toEqual([]);
    await clock.advance(1);
    expect(expired).toEqual(['c@80']);
    await clock.advance(20);
    expect(expired).toEqual(['c@80', 'a@100']);
    await clock.advance(30);
    expect(expired).toEqual(['c@80', 'a@100', 'b@130']);
    expect(deadlines.listCount).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('a removed entry never expires; the list sets its timer again for the next one', async () => {
    const { clock, deadlines, expired } = setup();
    const a = entry('a');
    deadlines.add(a, clock.now(), 100);
    await clock.advance(10);
    deadlines.add(entry('b'), clock.now(), 100);
    deadlines.remove(a);
    deadlines.remove(a); // a second remove does nothing
    await clock.advance(100);
    expect(expired).toEqual(['b@110']);
  });

  it('entries due together expire in the order they were added; an entry added while others expire is kept', async () => {
    const clock = new VirtualClock();
    const expired: string[] = [];
    const deadlines: Deadlines<Entry> = new Deadlines<Entry>(clock, (e) => {
      expired.push(`${e.name}@${clock.now()}`);
      if (e.name === 'x') deadlines.add(entry('late'), clock.now(), 10);
    });
    for (const name of ['x', 'y', 'z']) deadlines.add(entry(name), clock.now(), 10);
    await clock.advance(10);
    expect(expired).toEqual(['x@10', 'y@10', 'z@10']);
    await clock.advance(10);
    expect(expired).toEqual(['x@10', 'y@10', 'z@10', 'late@20']);
    expect(deadlines.listCount).toBe(0);
  });

  it('never keeps more lists (or timers) than entries: an emptied list goes with its timer', async () => {
    const { clock, deadlines, expired } = setup();
    const many = Array.from({ length: 50 }, (_, i) => entry(`e${i}`));
    // Every entry with a timeout of its own (as calls with inherited deadlines get).
    many.forEach((e, i) => deadlines.add(e, clock.now(), 1000 + i + 0.5));
    expect(deadlines.listCount).toBe(50);
    for (const e of many) deadlines.remove(e);
    expect(deadlines.listCount).toBe(0);
    expect(clock.pending).toBe(0);
    await clock.advance(5000);
    expect(expired).toEqual([]);
  });
});
