/**
 * This node's view of what the cluster serves and subscribes to, kept from
 * the registry's events: `svc/<name>/<node>` entries (a node serves `name`)
 * and `evt/<topic>/<node>` entries (a node subscribes to `topic`). Both are
 * owned by the announcing incarnation, so the registry removes them when it
 * goes down. Values come from other nodes: each is checked, and one that
 * does not parse counts as absent.
 */
import type { Entry, Owner, RegistryEvent } from '@clusterinfra/registry';
import { z } from 'zod';
import { MAX_GROUPS, SERVICE_PREFIX, TOPIC_PREFIX } from './constants.js';

/** How a method is announced: `rpc`, `idempotent` (an rpc safe to run twice) or `oneway`. */
export type MethodKind = 'rpc' | 'idempotent' | 'oneway';

export const providerValue = z.strictObject({
  channel: z.string().min(1).max(200),
  subservice: z.number().int().min(0).max(65535),
  methods: z.record(z.string().max(200), z.enum(['rpc', 'idempotent', 'oneway'])),
});
export type ProviderValue = z.infer<typeof providerValue>;

export const topicValue = z.strictObject({
  /** Groups with a subscriber on the node (balanced delivery picks one node per group). */
  groups: z.array(z.string().min(1).max(200)).max(MAX_GROUPS),
  /** The node has a subscriber without a group (it gets every event). */
  solo: z.boolean(),
});
export type TopicValue = z.infer<typeof topicValue>;

export interface Provider extends ProviderValue {
  readonly node: number;
  readonly incarnation: number;
}

export interface TopicNode extends TopicValue {
  readonly node: number;
  readonly incarnation: number;
}

export const serviceKey = (name: string, node: number): string => `${SERVICE_PREFIX}${name}/${node}`;
export const topicKey = (topic: string, node: number): string => `${TOPIC_PREFIX}${topic}/${node}`;

/** `<prefix><name>/<node>` → [name, node], or undefined. */
function splitKey(key: string, prefix: string): [string, number] | undefined {
  const slash = key.lastIndexOf('/');
  if (!key.startsWith(prefix) || slash <= prefix.length) return undefined;
  const node = Number(key.slice(slash + 1));
  return Number.isInteger(node) && node > 0 ? [key.slice(prefix.length, slash), node] : undefined;
}

export class Directory {
  /** name → node → provider. */
  readonly providers = new Map<string, Map<number, Provider>>();
  /** topic → node → subscriber node. */
  readonly topics = new Map<string, Map<number, TopicNode>>();
  /** The providers of a name in ascending node order (and their node numbers), built on first use after a change. */
  private readonly sorted = new Map<string, { readonly list: readonly Provider[]; readonly nodes: readonly number[] }>();

  providersOf(name: string): { readonly list: readonly Provider[]; readonly nodes: readonly number[] } {
    let entry = this.sorted.get(name);
    if (!entry) {
      const list = [...(this.providers.get(name)?.values() ?? [])].sort((a, b) => a.node - b.node);
      entry = { list, nodes: list.map((p) => p.node) };
      if (list.length > 0) this.sorted.set(name, entry);
    }
    return entry;
  }

  /** Start from the registry's entries. */
  load(entries: Iterable<Entry>): void {
    this.providers.clear();
    this.topics.clear();
    this.sorted.clear();
    for (const e of entries) this.set(e.key, e.value, e.owner);
  }

  /** Apply one registry event (in the registry's apply order). */
  apply(e: RegistryEvent): void {
    if (e.type === 'put') this.set(e.key, e.value, e.owner);
    else this.set(e.key, undefined, undefined);
  }

  private set(key: string, value: unknown, owner: Owner | undefined): void {
    const svc = splitKey(key, SERVICE_PREFIX);
    if (svc) {
      const v = owner && owner.node === svc[1] ? providerValue.safeParse(value) : undefined;
      this.sorted.delete(svc[0]);
      update(this.providers, svc[0], svc[1], v?.success ? { ...v.data, node: svc[1], incarnation: owner!.incarnation } : undefined);
      return;
    }
    const evt = splitKey(key, TOPIC_PREFIX);
    if (evt) {
      const v = owner && owner.node === evt[1] ? topicValue.safeParse(value) : undefined;
      update(this.topics, evt[0], evt[1], v?.success ? { ...v.data, node: evt[1], incarnation: owner!.incarnation } : undefined);
    }
  }
}

function update<T>(index: Map<string, Map<number, T>>, name: string, node: number, value: T | undefined): void {
  let byNode = index.get(name);
  if (value === undefined) {
    byNode?.delete(node);
    if (byNode?.size === 0) index.delete(name);
    return;
  }
  if (!byNode) index.set(name, (byNode = new Map()));
  byNode.set(node, value);
}
