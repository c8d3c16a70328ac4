/**
 * Seeded random path faults under traffic both ways, on a virtual clock:
 * paths are cut (both ways or one way), reset and healed at random while
 * both ends send numbered frames and the receivers pause and resume. After
 * everything heals, each side must have received every frame exactly once
 * and in order, and the link must never have closed. A failing seed is in
 * the test name and replays exactly.
 *
 * The memory network's cuts and drop rates lose frames on connections that
 * stay open (TCP would retransmit them): the multipath layer must notice
 * and send them again.
 */
import { describe, expect, it } from 'vitest';
import { SeededRandom, VirtualClock } from '@clusterinfra/core';
import type { MultipathPolicy } from '../src/index.js';
import { linkPair, numbered, pathAddress, upTo, watch } from './helpers.js';

/** More seeds: MULTIPATH_SEEDS=300 npx vitest run packages/transport-multipath/test/random-faults.test.ts (one: -t "seed 17 "). */
const SEEDS = Number(process.env.MULTIPATH_SEEDS ?? 12);

describe('random path faults under traffic', () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const policy: MultipathPolicy = seed % 2 === 0 ? 'both-active' : 'active-standby';
    it(`seed ${seed} (${policy}): every frame once, in order, and the link stays open`, async () => {
      const clock = new VirtualClock();
      const random = new SeededRandom(seed);
      // The link must outlive every fault here: the bound is far away.
      const { network, outbound, inbound } = await linkPair(clock, { policy, linkTimeoutMs: 600_000, receiveWindow: 64 * 1024 });
      const toServer = watch(inbound);
      const toClient = watch(outbound);
      let sentOut = 0;
      let sentIn = 0;
      const faults: string[] = [];
      const healAll = (): void => {
        network.heal();
        network.clearFaults();
      };
      for (let step = 0; step < 60; step++) {
        for (let k = random.int(20); k > 0; k--) outbound.send(numbered(sentOut++, 16 + random.int(3000)));
        for (let k = random.int(20); k > 0; k--) inbound.send(numbered(sentIn++, 16 + random.int(3000)));
        const p = random.int(2);
        const [a, b] = random.int(2) === 0 ? [pathAddress(1, p), pathAddress(2, p)] : [pathAddress(2, p), pathAddress(1, p)];
        switch (random.int(7)) {
          case 6:
            network.setLinkFaults(a, b, { dropRate: random.next() * 0.3 });
            faults.push(`lossy ${a}->${b}`);
            break;
          case 0:
            network.partition(a, b);
            faults.push(`cut ${p}`);
            break;
          case 1:
            network.partition(a, b, { oneWay: true });
            faults.push(`cut ${a}->${b}`);
            break;
          case 2:
            network.killLinks(a, b);
            faults.push(`reset ${p}`);
            break;
          case 3:
            healAll();
            faults.push('heal');
            break;
          case 4:
            // A receiver that stops reading for a while (its window fills, the sender holds the rest).
            (random.int(2) === 0 ? inbound : outbound).pause();
            break;
          default:
            inbound.resume();
            outbound.resume();
        }
        await clock.advance(20 + random.int(200));
      }
      healAll();
      inbound.resume();
      outbound.resume();
      const done = await clock.advanceUntil(() => toServer.frames.length >= sentOut && toClient.frames.length >= sentIn, 120_000);
      expect(done, `faults: ${faults.join(', ')}`).toBe(true);
      expect(toServer.frames).toEqual(upTo(sentOut));
      expect(toClient.frames).toEqual(upTo(sentIn));
      expect(toServer.closed).toBeUndefined();
      expect(toClient.closed).toBeUndefined();
      expect(faults.length).toBeGreaterThan(10);
    });
  }
});
