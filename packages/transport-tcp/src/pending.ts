/**
 * The listener's table of connections still in their handshake, and who
 * gives way when it is full.
 *
 * A new connection is never refused for want of room: it takes the place of
 * a pending one. Holding a slot must cost an attacker something, so the
 * victim is a connection that has sent nothing yet (cheapest to hold, and a
 * real peer speaks at once), the oldest of those; failing that, the oldest.
 * Limits, each enforced by evicting inside its own group:
 * - per source network (/24 for IPv4, /64 for IPv6): `perNetwork`, so one
 *   network only ever displaces its own connections;
 * - connections from unknown addresses together: `total - reserved` (at
 *   least 1), so addresses of known members always find room;
 * - all together: `total`, where a known newcomer displaces an unknown
 *   connection first.
 */
import { isIP } from 'node:net';

export interface PendingConnection {
  /** Source network key (networkOf). */
  readonly network: string;
  /** From an address of a known member. */
  readonly known: boolean;
  /** Bytes received so far. */
  readonly bytesRead: number;
}

export interface PendingLimits {
  readonly total: number;
  readonly perNetwork: number;
  readonly reserved: number;
}

/** Expand an IPv6 address (no zone) to its 8 groups. */
function ipv6Groups(ip: string): number[] {
  const [head = '', tail] = ip.split('::');
  const parse = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => {
          if (g.includes('.')) {
            const [a, b, c, d] = g.split('.').map(Number);
            return [(a! << 8) | b!, (c! << 8) | d!];
          }
          return [parseInt(g, 16)];
        });
  const front = parse(head);
  const back = tail === undefined ? [] : parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/**
 * The network a source address counts against: `a.b.c/24` for IPv4 (and
 * IPv4-mapped IPv6), the first four groups `/64` for IPv6; anything else is
 * its own network.
 */
export function networkOf(ip: string): string {
  const bare = ip.split('%')[0]!;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  const v4 = mapped ? mapped[1]! : bare;
  if (isIP(v4) === 4) return `${v4.split('.').slice(0, 3).join('.')}.0/24`;
  if (isIP(bare) === 6) return `${ipv6Groups(bare.toLowerCase()).slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
  return bare;
}

export class PendingSlots<T extends PendingConnection> {
  /** In arrival order: the first is the oldest. */
  private readonly entries: T[] = [];

  constructor(private readonly limits: PendingLimits) {}

  get size(): number {
    return this.entries.length;
  }

  values(): readonly T[] {
    return this.entries;
  }

  /**
   * Make room for `newcomer` (not yet in the table): returns the entries it
   * displaces, with the limit each broke, already removed from the table.
   */
  admit(newcomer: PendingConnection): Array<{ victim: T; limit: string }> {
    const out: Array<{ victim: T; limit: string }> = [];
    /** When `count` entries match `counted` and that reaches `cap`, evict one of those matching `from`. */
    const evict = (counted: (e: T) => boolean, cap: number, limit: string, from: (e: T) => boolean = counted): void => {
      if (this.entries.filter(counted).length < cap) return;
      const members = this.entries.filter(from);
      const victim = members.find((e) => e.bytesRead === 0) ?? members[0];
      if (victim === undefined) return;
      this.remove(victim);
      out.push({ victim, limit });
    };
    const { total, perNetwork, reserved } = this.limits;
    const unknownCap = Math.max(1, total - reserved);
    evict((e) => e.network === newcomer.network, perNetwork, `${perNetwork} from network ${newcomer.network}`);
    if (!newcomer.known && reserved > 0) evict((e) => !e.known, unknownCap, `${unknownCap} from unknown addresses`);
    const anyUnknown = this.entries.some((e) => !e.known);
    evict(() => true, total, `${total} in total`, (e) => !(newcomer.known && anyUnknown) || !e.known);
    return out;
  }

  add(entry: T): void {
    this.entries.push(entry);
  }

  remove(entry: T): void {
    const i = this.entries.indexOf(entry);
    if (i >= 0) this.entries.splice(i, 1);
  }
}
