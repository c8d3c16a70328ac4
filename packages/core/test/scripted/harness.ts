/**
 * Scripted interaction tests over the CLMS protocol core (docs/testing.md,
 * "Scripted protocol tests"): a few `Core` state machines driven by hand,
 * with a network that delivers only what a script says, so each rule of
 * the protocol is shown step by step, in milliseconds, without timers,
 * sockets or processes. The harness plays the driver: it performs the
 * effects a real node leaves to ClusterNode (proposing what an elected
 * master proposes, running the campaign a `stand` asks for) the way
 * clms/node.ts does.
 *
 * A script is a list of blocks, each a command line, `----`, and the
 * expected output up to the next blank line (etcd-io/raft's datadriven
 * files have this shape). Lines starting with `#` outside a block are
 * comments.
 */
import { History } from '../../src/clms/protocol/history.js';
import { Core, type Build, type Effect, type Message } from '../../src/clms/protocol/core.js';
import type { QuorumPolicy } from '../../src/clms/protocol/quorum.js';
import type { NodeState, Report, Transition } from '../../src/clms/protocol/messages.js';

export interface Block {
  /** 1-based line of the command. */
  line: number;
  command: string;
  expected: string;
  /** Comment lines before the command, kept on rewrite. */
  comments: string[];
}

/** Parse a script into blocks; throws on a block without `----`. */
export function parseScript(text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let comments: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    if (l.startsWith('#')) {
      comments.push(l);
      continue;
    }
    if (lines[i + 1] !== '----') throw new Error(`line ${i + 1}: "${l}" is not followed by ----`);
    const out: string[] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j]!.trim() !== ''; j++) out.push(lines[j]!);
    blocks.push({ line: i + 1, command: l, expected: out.join('\n'), comments });
    comments = [];
    i = j;
  }
  return blocks;
}

/** The script again, with `actual` as every block's output. */
export function renderScript(blocks: Block[], actual: string[]): string {
  return `${blocks.map((b, i) => [...b.comments, b.command, '----', actual[i]].filter((l) => l !== '').join('\n')).join('\n\n')}\n`;
}

interface Call {
  kind: 'call';
  from: number;
  to: number;
  call: number;
  method: string;
  args: unknown;
}
interface Send {
  kind: 'send';
  from: number;
  to: number;
  method: string;
  args: unknown;
}
interface Answer {
  kind: 'answer';
  from: number;
  to: number;
  call: number;
  value: unknown;
}
type Packet = Call | Send | Answer;

/** Who asked what, for a request a core answers (its reply goes back as the answer to that call). */
interface Asked {
  from: number;
  call: number | undefined;
}

interface Member {
  core: Core;
  crashed: boolean;
  /** Effects not processed by `ready` yet. */
  outbox: Effect[];
  incarnation: number;
}

const CALL_TIMEOUT = 'ICS_ERR_DEADLINE_EXCEEDED';

export class Cluster {
  private now = 0;
  private readonly nodes = new Map<number, Member>();
  private network: Packet[] = [];
  private nextId = 1;
  private readonly asked = new Map<number, Asked>();
  /** Call numbers of injected messages (no core made those calls). */
  private nextInjected = 1_000_000;
  /** Campaigns the harness began for a `stand` effect: their end goes back as `stood`. */
  private readonly stands = new Set<number>();
  private candidates: number[] = [];
  private quorum: QuorumPolicy = 'majority';
  private readonly proposals = new Map<number, string>();

  run(command: string): string {
    const [verb, ...args] = command.trim().split(/\s+/);
    const out: string[] = [];
    switch (verb) {
      case 'nodes':
        return this.create(args);
      case 'bootstrap':
        return this.bootstrap(args.map(Number));
      case 'tick':
        // `tick N [time] [election]`: a wake-up of node N (the planned election's, with `election`).
        if (args[1] !== undefined) this.now = Number(args[1]);
        this.step(this.node(args[0]), args[2] === 'election' ? { type: 'tick', what: 'election' } : { type: 'tick' });
        return 'ok';
      case 'interval':
        // `interval N [time]`: node N's heartbeat interval elapses (as master it heartbeats; as member it judges the master's silence).
        if (args[1] !== undefined) this.now = Number(args[1]);
        this.step(this.node(args[0]), { type: 'interval' });
        return 'ok';
      case 'time':
        this.now = Number(args[0]);
        return 'ok';
      case 'campaign':
        this.step(this.node(args[0]), { type: 'campaign', id: this.nextId++, bootstrap: args[1] === 'bootstrap' });
        return 'ok';
      case 'propose':
        return this.propose(Number(args[0]), args[1]!, Number(args[2]));
      case 'suspect':
        // Node N's detector suspects node M.
        this.step(this.node(args[0]), { type: 'suspect', node: Number(args[1]), reason: args.slice(2).join(' ') || 'suspected', observers: { [args[0]!]: 'suspected' } });
        return 'ok';
      case 'link-lost':
        this.step(this.node(args[0]), { type: 'link-lost', node: Number(args[1]), incarnation: this.node(args[1]).incarnation });
        return 'ok';
      case 'silence':
        // The master has not been heard for a while (a tick of the driver would lose the quorum and forget it).
        this.step(this.node(args[0]), { type: 'lose-quorum', rule: 'no master heard within the failure timeout' });
        this.step(this.node(args[0]), { type: 'master', master: undefined, term: this.node(args[0]).core.term });
        return 'ok';
      case 'ready':
        for (const n of this.select(args[0])) this.ready(n, out);
        return out.join('\n') || 'nothing';
      case 'deliver':
        return this.deliver(args[0] ?? 'all', out, args[1]);
      case 'drop':
        return this.drop(args[0] ?? 'all', out, args[1]);
      case 'phase':
        // What the driver sets outside the core: joined, evicted (rejoining), closed.
        this.node(args[0]).core.phase = args[1] as Core['phase'];
        return 'ok';
      case 'crash': {
        const m = this.node(args[0]);
        m.crashed = true;
        m.outbox = [];
        return 'ok';
      }
      case 'restart': {
        // `restart N [time]`: node N starts again as a new incarnation (the
        // driver cancels its timers, resets the core) and rejoins the same
        // history at once, as a join would install it.
        if (args[1] !== undefined) this.now = Number(args[1]);
        const m = this.node(args[0]);
        const held = m.core.history.since(0);
        this.step(m, { type: 'reset', why: 'restarting as a new incarnation', history: new History(1000) });
        for (const t of held) m.core.history.append(t);
        m.core.phase = 'member';
        m.core.lastHeardMaster = this.now;
        return 'ok';
      }
      case 'inject':
        return this.inject(args[0]!, args[1]!, args.slice(2));
      case 'owe': {
        // `owe N nodeup-done|cleanup-done M`: node N ran its callbacks for node M (what the driver steps then).
        const about = Number(args[2]);
        this.step(this.node(args[0]), { type: 'owe', report: { kind: args[1] as 'nodeup-done' | 'cleanup-done', node: about, incarnation: this.node(String(about)).incarnation } });
        return 'ok';
      }
      case 'stabilize':
        return this.stabilize(out);
      case 'status':
        return this.select(args[0])
          .map((n) => this.status(n))
          .join('\n');
      case 'history':
        return this.select(args[0])
          .map((n) => `${n}: ${this.node(String(n)).core.history.since(0).map(describe).join(', ') || '(empty)'}`)
          .join('\n');
      default:
        throw new Error(`unknown command "${verb}"`);
    }
  }

  private create(args: string[]): string {
    const opts = new Map(args.filter((a) => a.includes('=')).map((a) => a.split('=') as [string, string]));
    const count = Number(args.find((a) => !a.includes('=')));
    this.candidates = (opts.get('candidates') ?? Array.from({ length: count }, (_, i) => i + 1).join(',')).split(',').map(Number);
    const q = opts.get('quorum');
    this.quorum = q === undefined || q === 'majority' || q === 'none' ? (q ?? 'majority') : { size: Number(q) };
    for (let n = 1; n <= count; n++) {
      const core = new Core(
        {
          self: n,
          candidates: this.candidates,
          quorum: this.quorum,
          voters: opts.get('voters') === 'candidates' ? 'candidates' : 'members',
          formation: opts.get('formation') === 'all-candidates' ? 'all-candidates' : 'majority',
          failureTimeoutMs: 1000,
          heartbeatIntervalMs: 100,
          rpcTimeoutMs: 500,
          electionStaggerMs: 200,
          // No jitter: a script's times are exact (the staggers still order the candidates).
          random: { int: () => 0 },
        },
        new History(1000),
      );
      core.phase = 'joining';
      this.nodes.set(n, { core, crashed: false, outbox: [], incarnation: n * 100 });
    }
    return 'ok';
  }

  /** Install a formed cluster on `nodes` (all Up, the first master of term 1), as if founded and joined. */
  private bootstrap(nodes: number[]): string {
    const [first] = nodes;
    const ts: Transition[] = [];
    const add = (t: Omit<Transition, 'number' | 'term' | 'time' | 'cause'>): void => void ts.push({ ...t, number: ts.length + 1, term: 1, time: 0, cause: 'bootstrap' });
    for (const n of nodes) {
      const incarnation = this.node(String(n)).incarnation;
      add({ kind: 'state', node: n, incarnation, from: 'NeverUp', to: 'ComingUp', address: `mem:${n}` });
      add({ kind: 'state', node: n, incarnation, from: 'ComingUp', to: 'Up' });
      if (n === first) add({ kind: 'master', node: n, incarnation, from: 'Up', to: 'Up' });
    }
    for (const n of nodes) {
      const c = this.node(String(n)).core;
      for (const t of ts) c.history.append(t);
      c.phase = 'member';
      c.everJoined = true;
      c.term = 1;
      c.master = first;
      c.quorumOk = true;
      c.lastHeardMaster = this.now;
    }
    return `history ${ts.map(describe).join(', ')}`;
  }

  private node(arg: string | undefined): Member {
    const m = this.nodes.get(Number(arg));
    if (!m) throw new Error(`no node ${arg}`);
    return m;
  }

  private select(arg: string | undefined): number[] {
    return arg === undefined || arg === 'all' ? [...this.nodes.keys()] : [Number(arg)];
  }

  private step(m: Member, message: Message): void {
    if (m.crashed) return;
    m.core.step({ ...message, now: this.now, wall: this.now });
    m.outbox.push(...m.core.ready());
  }

  private propose(at: number, what: string, node: number): string {
    const m = this.node(String(at));
    const id = this.nextId++;
    this.proposals.set(id, `${what} ${node}`);
    // As node.ts proposes them: a join, and the Up or Down a barrier opens, may share a round.
    const batchable = what === 'join' || what === 'up' || what === 'gone';
    this.step(m, { type: 'propose', id, build: this.build(m, what, node), ...(batchable ? { node } : {}) });
    return `p${id}`;
  }

  /** The changes a script can propose, each built against the history when its turn comes (as node.ts builds them). */
  private build(m: Member, what: string, node: number): Build {
    const h = (): History => m.core.history;
    const move = (from: NodeState[], to: NodeState, cause: string): Build => () => {
      const s = h().stateOf(node);
      if (!from.includes(s)) return undefined;
      return { kind: 'state', node, incarnation: this.node(String(node)).incarnation, from: s, to, cause, ...(to === 'ComingUp' ? { address: `mem:${node}` } : {}) };
    };
    switch (what) {
      case 'join':
        return move(['NeverUp', 'Down'], 'ComingUp', 'joined');
      case 'up':
        return move(['ComingUp'], 'Up', 'every member ran its nodeup callbacks');
      case 'down':
        return move(['Up', 'ComingUp', 'ShuttingDown'], 'GoingDown', 'declared down');
      case 'leave':
        return move(['Up'], 'ShuttingDown', 'left');
      case 'gone':
        return move(['GoingDown', 'ShuttingDown'], 'Down', 'every node finished its cleanup');
      default:
        throw new Error(`unknown change "${what}"`);
    }
  }

  /**
   * A hand-made message, as a confused, stale or rogue peer might send it:
   * `inject 3->2 append term=5 history=other commit=7`. Defaults: the
   * sender's term, the receiver's history, the receiver's last as commit,
   * no entries; `history=none` sends null, `history=other` another
   * history's name. Its answer goes back as one to a call the sender never
   * made (the sender's core drops it).
   */
  private inject(route: string, method: string, fields: string[]): string {
    const [from, to] = route.split('->').map(Number) as [number, number];
    const f = new Map(fields.map((kv) => kv.split('=') as [string, string]));
    const dest = this.node(String(to)).core;
    const history = f.get('history') === 'none' ? null : f.get('history') === 'other' ? '9.900.0' : dest.history.id;
    const term = Number(f.get('term') ?? this.node(String(from)).core.term);
    const [lastNumber, lastTerm] = (f.get('last') ?? `${dest.history.last}@${dest.history.lastTerm}`).split('@').map(Number);
    const args =
      method === 'vote'
        ? { term, history, lastNumber, lastTerm, bootstrap: f.has('bootstrap'), pre: f.has('pre') }
        : method === 'append'
          ? { term, history, commit: Number(f.get('commit') ?? dest.history.last), entries: [] }
          : { term, history, commit: Number(f.get('commit') ?? dest.history.last) };
    const call = this.nextInjected++;
    this.network.push(method === 'commit' ? { kind: 'send', from, to, method, args } : { kind: 'call', from, to, call, method, args });
    return `queued ${from}->${to} ${method} ${describeArgs(method, args)}`;
  }

  /** Process node `n`'s effects: print them, put calls and sends on the network, perform the driver's part. */
  private ready(n: number, out: string[]): void {
    const m = this.node(String(n));
    while (m.outbox.length > 0) {
      const e = m.outbox.shift()!;
      out.push(`${n}: ${this.describeEffect(n, e)}`);
      this.perform(n, m, e);
    }
  }

  private perform(n: number, m: Member, e: Effect): void {
    switch (e.type) {
      case 'call':
        this.network.push({ kind: 'call', from: n, to: e.to, call: e.call, method: e.method, args: e.args });
        return;
      case 'send':
        this.network.push({ kind: 'send', from: n, to: e.to, method: e.method, args: e.args });
        return;
      case 'reply': {
        const a = this.asked.get(e.id)!;
        this.asked.delete(e.id);
        if (a.call !== undefined) this.network.push({ kind: 'answer', from: n, to: a.from, call: a.call, value: e.value });
        return;
      }
      case 'advance':
        return this.step(m, { type: 'advance' });
      case 'elected': {
        // What ClusterNode proposes when elected: the carried entries, the founding entries, its master record.
        const self = n;
        const inc = m.incarnation;
        const h = m.core.history;
        // (Carried entries the core proposed itself, first.)
        if (e.bootstrap) {
          this.step(m, { type: 'propose', id: this.nextId++, build: () => ({ kind: 'state', node: self, incarnation: inc, from: h.stateOf(self), to: 'ComingUp', cause: 'formed the cluster', address: `mem:${self}` }) });
          this.step(m, { type: 'propose', id: this.nextId++, build: () => ({ kind: 'state', node: self, incarnation: inc, from: 'ComingUp', to: 'Up', cause: 'formed the cluster' }) });
        }
        this.step(m, { type: 'propose', id: this.nextId++, build: () => ({ kind: 'master', node: self, incarnation: inc, from: h.stateOf(self), to: h.stateOf(self), cause: `master for term ${e.term}` }) });
        this.step(m, { type: 'master-ready' });
        return;
      }
      case 'consult-detector':
        // The default detector suspects on every lost link.
        return this.step(m, { type: 'suspect', node: e.node, reason: e.reason, observers: e.observers });
      case 'check-detector':
        // Silence suspects nobody here: a script suspects with `suspect`.
        return this.step(m, { type: 'detector-checked', suspects: [] });
      case 'stand': {
        // As ClusterNode does: the campaign, and its end back as `stood`.
        const id = this.nextId++;
        this.stands.add(id);
        return this.step(m, { type: 'campaign', id, bootstrap: false });
      }
      case 'campaign-done':
        if (this.stands.delete(e.id)) this.step(m, { type: 'stood', refused: e.outcome === 'refused' });
        return;
      case 'respond': {
        const a = this.asked.get(e.id);
        this.asked.delete(e.id);
        if (a?.call !== undefined) this.network.push({ kind: 'answer', from: n, to: a.from, call: a.call, value: e.value ?? { error: e.error } });
        return;
      }
      default:
        return;
    }
  }

  /** `all` or `from->to`, and only calls or sends of `method` when given. */
  private matches(p: Packet, sel: string, method: string | undefined): boolean {
    if (method !== undefined && (p.kind === 'answer' || p.method !== method)) return false;
    if (sel === 'all') return true;
    const [from, to] = sel.split('->').map(Number);
    return p.from === from && p.to === to;
  }

  /** Take the packets `sel` (and `method`) selects off the network, in order. */
  private take(sel: string, method: string | undefined): Packet[] {
    const taken = this.network.filter((p) => this.matches(p, sel, method));
    this.network = this.network.filter((p) => !this.matches(p, sel, method));
    return taken;
  }

  private deliver(sel: string, out: string[], method?: string): string {
    const now = this.take(sel, method);
    for (const p of now) {
      out.push(`${p.from}->${p.to} ${describePacket(p)}`);
      const dest = this.node(String(p.to));
      if (dest.crashed) {
        // Nothing answers: the caller's call fails (its timeout).
        if (p.kind === 'call') this.fail(p, out);
        continue;
      }
      if (p.kind === 'answer') this.answered(p);
      else if (p.kind === 'send') this.step(dest, { type: 'commit', from: p.from, req: p.args as never });
      else this.request(dest, p);
    }
    return out.join('\n') || 'nothing to deliver';
  }

  private request(dest: Member, p: Call): void {
    const id = this.nextId++;
    if (p.method === 'fetch') {
      // The master's onFetch: the transitions after `after`.
      const after = (p.args as { after: number }).after;
      this.network.push({ kind: 'answer', from: p.to, to: p.from, call: p.call, value: { transitions: dest.core.history.since(after), snapshot: null } });
      return;
    }
    if (p.method === 'alive' || p.method === 'probe') {
      // The driver's handlers: alive answers at once; a probe asks the target (reached unless it crashed).
      const target = (p.args as { node?: number } | null)?.node;
      const value = p.method === 'alive' ? { incarnation: dest.incarnation } : { reachable: target !== undefined && !this.node(String(target)).crashed };
      this.network.push({ kind: 'answer', from: p.to, to: p.from, call: p.call, value });
      return;
    }
    this.asked.set(id, { from: p.from, call: p.call });
    if (p.method === 'report') return this.step(dest, { type: 'report', id, from: p.from, report: p.args as never });
    if (p.method === 'reports') return this.step(dest, { type: 'reports', id, from: p.from, reports: (p.args as { reports: never[] }).reports });
    this.step(dest, { type: p.method as 'vote' | 'append' | 'heartbeat', id, from: p.from, req: p.args as never });
  }

  private answered(p: Answer): void {
    this.step(this.node(String(p.to)), { type: 'answer', call: p.call, value: p.value });
  }

  private fail(p: Call, out: string[]): void {
    out.push(`${p.to}->${p.from} failed #${p.call} (${CALL_TIMEOUT})`);
    this.step(this.node(String(p.from)), { type: 'failed', call: p.call, code: CALL_TIMEOUT });
  }

  /** Drop packets: a call dropped either way fails at its caller, as its timeout would. */
  private drop(sel: string, out: string[], method?: string): string {
    const gone = this.take(sel, method);
    for (const p of gone) {
      out.push(`dropped ${p.from}->${p.to} ${describePacket(p)}`);
      if (p.kind === 'call') this.fail(p, out);
      else if (p.kind === 'answer' && !this.node(String(p.to)).crashed) {
        out.push(`${p.from}->${p.to} failed #${p.call} (${CALL_TIMEOUT})`);
        this.step(this.node(String(p.to)), { type: 'failed', call: p.call, code: CALL_TIMEOUT });
      }
    }
    return out.join('\n') || 'nothing to drop';
  }

  /** Ready and deliver everything until nothing moves (bounded). */
  private stabilize(out: string[]): string {
    for (let round = 0; round < 100; round++) {
      const before = out.length;
      for (const n of this.nodes.keys()) this.ready(n, out);
      if (this.network.length > 0) this.deliver('all', out);
      if (out.length === before) return out.join('\n') || 'nothing';
    }
    throw new Error('stabilize: still busy after 100 rounds');
  }

  private status(n: number): string {
    const m = this.node(String(n));
    const c = m.core;
    const p = c.pending ? `#${c.pending.number}@${c.pending.term}` : '-';
    const master = c.master === undefined ? '-' : String(c.master);
    return `${n}: term=${c.term} voted=${c.votedIn} master=${master} phase=${c.phase} last=${c.history.last} pending=${p} quorum=${c.quorumOk ? 'yes' : 'no'}${m.crashed ? ' crashed' : ''}`;
  }

  private describeEffect(n: number, e: Effect): string {
    switch (e.type) {
      case 'call':
        return `call #${e.call} -> ${e.to} ${e.method} ${describeArgs(e.method, e.args)}`;
      case 'send':
        return `send -> ${e.to} ${e.method} ${describeArgs(e.method, e.args)}`;
      case 'reply':
        return `reply to ${this.asked.get(e.id)?.from ?? '?'} ${JSON.stringify(e.value)}`;
      case 'wake':
        return `wake at ${e.at}${e.what ? ` (${e.what})` : ''}`;
      case 'check-detector':
        return `check detector: ${e.members.join(', ') || 'nobody'}`;
      case 'stand':
        return 'stand for election';
      case 'evicted':
        return `evicted: ${e.cause}`;
      case 'apply':
        return `apply ${describe(e.t)}`;
      case 'installed':
        return `installed the master's snapshot at #${this.node(String(n)).core.history.first - 1}`;
      case 'master':
        return `master ${e.master ?? 'none'} term ${e.term}`;
      case 'stepped-down':
        return `step down: ${e.why}`;
      case 'quorum':
        return `quorum ${e.has ? 'regained' : 'lost'}: ${typeof e.rule === 'string' ? e.rule : `${e.rule.what} (heard ${e.rule.heard.join(',')} of ${e.rule.voters.join(',')})`}`;
      case 'settle': {
        const what = this.proposals.get(e.id) ?? 'driver';
        if (e.error) return `settle p${e.id} (${what}): ${e.error.kind}${e.error.message ? ` (${e.error.message})` : ''}`;
        return `settle p${e.id} (${what}): ${e.t ? `committed #${e.t.number}` : 'nothing to do'}`;
      }
      case 'pre-vote':
        return `pre-vote granted by ${e.granted.join(',')} of ${e.voters.join(',')}: ${e.enough ? 'enough' : 'not enough'}`;
      case 'elected':
        return `elected term ${e.term} by ${e.granted.join(',')}${e.carried.length > 0 ? `, carrying ${e.carried.map(describe).join(', ')}` : ''}`;
      case 'campaign-done':
        return `campaign ${e.outcome}`;
      case 'advance':
        return 'advance';
      case 'consult-detector':
        return `consult detector: link to ${e.node} lost`;
      case 'heard-alive':
        return `heard alive ${e.node}`;
      case 'hook':
        return `hook ${e.hook} ${e.node}`;
      case 'record':
        return `record down ${e.record.node} term ${e.record.term}: ${e.record.rule} ${JSON.stringify(e.record.observers)}`;
      case 'log':
        return `log ${e.message}`;
      case 'master-silent':
        return 'master silent';
      case 'respond':
        return `respond to ${this.asked.get(e.id)?.from ?? '?'} ${e.error ? `error ${e.error.kind}` : JSON.stringify(e.value, describeValue)}`;
      case 'ready-report':
        return `ready ${e.keyService}@${e.epoch} from ${e.from}`;
    }
  }
}

/** `#4 2:ComingUp@1` (number, node:state or master, term). */
function describe(t: Transition): string {
  return `#${t.number} ${t.node}:${t.kind === 'state' ? t.to : t.kind}@${t.term}`;
}

function describeArgs(method: string, a: unknown): string {
  const r = a as Record<string, unknown>;
  if (method === 'vote') return `term=${r.term} last=${r.lastNumber}@${r.lastTerm}${r.pre ? ' pre' : ''}${r.bootstrap ? ' bootstrap' : ''}`;
  if (method === 'append') return `term=${r.term} commit=${r.commit} entries=${(r.entries as Transition[]).map((t) => t.number).join(',') || 'none'}${r.reports ? ' reports' : ''}${r.heard !== undefined ? ` heard=${String(r.heard)}` : ''}`;
  if (method === 'fetch') return `after=${r.after}`;
  if (method === 'alive') return '';
  if (method === 'probe') return `node=${r.node} timeoutMs=${r.timeoutMs}`;
  if (method === 'report') return `${r.kind} node=${r.node}${r.reason ? ` reason=${r.reason}` : ''}`;
  if (method === 'reports') return (r.reports as Report[]).map((x) => `${x.kind} node=${x.node}`).join(', ');
  return `term=${r.term} commit=${r.commit}`;
}

/** JSON of an answer: transitions by number, reports as `kind:node`. */
function describeValue(key: string, v: unknown): unknown {
  if (!Array.isArray(v) || v.length === 0 || typeof v[0] !== 'object') return v;
  return key === 'reports' ? (v as Report[]).map((r) => `${r.kind}:${r.node}`) : (v as Transition[]).map((t) => t.number);
}

function describePacket(p: Packet): string {
  if (p.kind === 'answer') return `answer #${p.call} ${JSON.stringify(p.value, describeValue)}`;
  return `${p.method}${p.kind === 'call' ? ` #${p.call}` : ''} ${describeArgs(p.method, p.args)}`;
}
