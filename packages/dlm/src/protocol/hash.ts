/**
 * Resource mastering by rendezvous (highest-random-weight) hashing: the
 * master of a resource is the member with the highest score for
 * (resource, node). Every node computes the same master from the same
 * member set, with no directory to look up, and a change of the set moves
 * only the resources whose winner changed: those of a departed node, and
 * about 1/n of the others towards a node that joined.
 */

/** FNV-1a over the UTF-16 code units of `s`, 32 bits. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A 32-bit mix (the murmur3 finalizer) of a resource hash and a node number. */
function score(resourceHash: number, node: number): number {
  let h = (resourceHash ^ Math.imul(node, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The master of `resource` among `members` (ties, practically never, go to the lower node number). */
export function masterOf(resource: string, members: readonly { node: number }[]): number {
  const h = fnv1a(resource);
  let best = -1;
  let bestNode = 0;
  for (const m of members) {
    const s = score(h, m.node);
    if (s > best || (s === best && m.node < bestNode)) {
      best = s;
      bestNode = m.node;
    }
  }
  return bestNode;
}
