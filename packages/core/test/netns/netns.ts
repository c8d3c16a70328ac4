/**
 * A private multi-host network made of Linux network namespaces, for the
 * netns test (./netns.test.ts). Nothing here touches the host's network:
 *
 *   hub namespace `cinetns<pid>-hub`:  bridge br0 (and br1, the far side of a cut)
 *                                      veth v1..vN, one per host, attached to br0
 *   host namespace `cinetns<pid>-n<i>`: eth0 (the other end of v<i>), 10.213.<x>.<10+i>/24, lo
 *
 * A cut moves the hub ends of some hosts to br1: those hosts still reach each
 * other, but not the rest (their packets are dropped silently, like a
 * partition in a switch, not refused). Healing moves them back to br0.
 *
 * Names carry the pid of the process that made them, so a later run can tell
 * leftovers of a crashed run (pid gone) from a run going on beside it.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

const PREFIX = 'cinetns';
const NAME = new RegExp(`^${PREFIX}(\\d+)-(hub|n\\d+)$`);

/** Run `ip` with arguments; reject with its stderr. */
async function ip(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args, { timeout: 15_000 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/**
 * Why this machine cannot run the test, or undefined when it can: Linux,
 * root, `ip` present, and a namespace can actually be made (a container
 * without CAP_SYS_ADMIN cannot).
 */
export function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root (to create network namespaces)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    return 'needs iproute2 (the ip command)';
  }
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe', timeout: 10_000 });
  } catch (err) {
    const e = err as Error & { stderr?: Buffer };
    return `cannot create a network namespace: ${(e.stderr?.toString() ?? e.message).trim()}`;
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // never made
    }
  }
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kill what runs in namespace `ns` (SIGKILL), then delete it. Errors are ignored: best effort. */
async function destroyNamespace(ns: string): Promise<void> {
  const pids = await ip('netns', 'pids', ns).catch(() => '');
  for (const p of pids.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await ip('netns', 'del', ns).catch(() => undefined);
}

/** Delete namespaces of earlier runs that crashed (their pid is gone). Returns their names. */
export async function removeLeftovers(): Promise<string[]> {
  const list = await ip('netns', 'list').catch(() => '');
  const stale: string[] = [];
  for (const line of list.split('\n')) {
    const name = line.split(/\s/)[0] ?? '';
    const m = NAME.exec(name) ?? new RegExp(`^${PREFIX}(\\d+)-probe$`).exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) stale.push(name);
  }
  for (const ns of stale) await destroyNamespace(ns);
  return stale;
}

export class NetnsNetwork {
  readonly hub: string;
  /** `/24` prefix of the private subnet, e.g. `10.213.17`. */
  readonly subnet: string;
  private readonly made: string[] = [];
  private readonly cut = new Set<number>();

  private constructor(readonly size: number) {
    this.hub = `${PREFIX}${process.pid}-hub`;
    // Any /24 would do inside private namespaces; one per pid keeps two runs' logs apart.
    this.subnet = `10.213.${(process.pid % 250) + 1}`;
  }

  /** Build the hub and `size` hosts. On failure, whatever was made is removed again. */
  static async create(size: number): Promise<NetnsNetwork> {
    const net = new NetnsNetwork(size);
    try {
      await net.build();
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  namespaceOf(i: number): string {
    return `${PREFIX}${process.pid}-n${i}`;
  }

  addressOf(i: number): string {
    return `${this.subnet}.${10 + i}`;
  }

  private async build(): Promise<void> {
    await this.addNamespace(this.hub);
    await ip('-n', this.hub, 'link', 'set', 'lo', 'up');
    for (const br of ['br0', 'br1']) {
      await ip('-n', this.hub, 'link', 'add', br, 'type', 'bridge');
      await ip('-n', this.hub, 'link', 'set', br, 'up');
    }
    for (let i = 1; i <= this.size; i++) {
      const ns = this.namespaceOf(i);
      await this.addNamespace(ns);
      // Both ends are born where they belong: v<i> in the hub, eth0 in the host.
      await ip('-n', this.hub, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ip('-n', this.hub, 'link', 'set', `v${i}`, 'master', 'br0');
      await ip('-n', this.hub, 'link', 'set', `v${i}`, 'up');
      await ip('-n', ns, 'addr', 'add', `${this.addressOf(i)}/24`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
  }

  private async addNamespace(ns: string): Promise<void> {
    await ip('netns', 'add', ns);
    this.made.push(ns);
  }

  /** Cut `hosts` off from the rest (they keep reaching each other). */
  async partition(hosts: number[]): Promise<void> {
    for (const i of hosts) {
      await ip('-n', this.hub, 'link', 'set', `v${i}`, 'master', 'br1');
      this.cut.add(i);
    }
  }

  /** Put every cut host back on the shared bridge. */
  async heal(): Promise<void> {
    for (const i of [...this.cut]) {
      await ip('-n', this.hub, 'link', 'set', `v${i}`, 'master', 'br0');
      this.cut.delete(i);
    }
  }

  /** Kill every process left in the namespaces and delete them (veths and bridges go with them). Idempotent. */
  async destroy(): Promise<void> {
    for (const ns of this.made.splice(0).reverse()) await destroyNamespace(ns);
  }

  /** The names this network uses that still exist (for the test to check its cleanup). */
  async existing(): Promise<string[]> {
    const list = await ip('netns', 'list');
    const mine = new Set([this.hub, ...Array.from({ length: this.size }, (_, i) => this.namespaceOf(i + 1))]);
    return list
      .split('\n')
      .map((l) => l.split(/\s/)[0] ?? '')
      .filter((n) => mine.has(n));
  }
}
