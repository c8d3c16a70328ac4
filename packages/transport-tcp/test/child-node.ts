// A peer in its own process, for the SIGKILL test: connects to argv[2],
// sends one frame, prints "ready", then waits to be killed.
import { cryptoRandom, realClock, silentLogger } from '@clusterinfra/core';
import { tcp } from '../src/index.js';

const address = process.argv[2]!;
const transport = tcp().create({
  identity: { clusterName: 'test', nodeNum: 42, incarnation: process.pid },
  clock: realClock,
  random: cryptoRandom,
  logger: silentLogger,
});
const link = await transport.connect(address);
link.resume();
link.send(Uint8Array.of(1, 2, 3));
process.stdout.write('ready\n');
setInterval(() => {}, 1_000);
