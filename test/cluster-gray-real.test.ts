// Gray failure on a real 4-host cluster (issue 11), then a bounded SIGTERM with an unreachable
// peer (issue 9). Hosts are network namespaces on a bridge created by this test (10.98.0.N); the
// sick host's loss is made with nftables inside its own namespace; traffic stays inside them.
import t from 'tap';
import { have, sleep } from './helpers';
import { Bridge, NsHost, sh } from './netns';

const KEY = 'test-cluster-key-gray-0123456789';

interface Transition { at: number; member: string; from: string; to: string }

/** A host whose daemon's log is read for member transitions. */
class Host extends NsHost {
  /** member transitions seen in this daemon's log, stamped when the test read them */
  readonly transitions: Transition[] = [];
  private seen = { out: 0, err: 0 };

  override async startDaemon(extra: string[] = []): Promise<void> {
    await super.startDaemon(extra, { key: KEY, logLevel: 'info' });
  }

  /** Reads new log lines: "cluster: member X prev -> state". */
  poll(now: number): void {
    for (const k of ['out', 'err'] as const) {
      const text = k === 'out' ? this.daemon.stdout : this.daemon.stderr;
      const fresh = text.slice(this.seen[k]);
      const cut = fresh.lastIndexOf('\n');
      if (cut < 0) continue;
      this.seen[k] += cut + 1;
      for (const m of fresh.slice(0, cut).matchAll(/cluster: member (\S+) (\S+) -> (\S+)/g)) {
        this.transitions.push({ at: now, member: m[1]!, from: m[2]!, to: m[3]! });
      }
    }
  }

  /** Last state of `member` in this host's view according to its log (undefined: never changed). */
  stateOf(member: string): string | undefined {
    for (let k = this.transitions.length - 1; k >= 0; k--) if (this.transitions[k]!.member === member) return this.transitions[k]!.to;
    return undefined;
  }

  async members(): Promise<Array<Record<string, unknown>>> {
    return this.get('members');
  }

  nft(script: string): void { sh(`ip netns exec ${this.ns} nft -f - <<'EOF'\n${script}\nEOF`); }
}

const LOSS_TABLE = `table inet axgray {
  chain in { type filter hook input priority 0; iifname != "lo" numgen random mod 100 < 80 drop; }
  chain out { type filter hook output priority 0; oifname != "lo" numgen random mod 100 < 80 drop; }
}`;
const DROP_ALL_TABLE = `table inet axgray {
  chain in { type filter hook input priority 0; iifname != "lo" drop; }
  chain out { type filter hook output priority 0; oifname != "lo" drop; }
}`;
const NO_TABLE = 'table inet axgray\ndelete table inet axgray';

t.test('gray failure on a real cluster: the sick host is removed and kept out, healthy hosts never', { skip: have('nft') ? false : 'nft (nftables) is not installed' }, async (t) => {
  const net = new Bridge('g', '10.98.0', KEY);
  t.teardown(() => net.destroy());
  const make = (b: Bridge, i: number, name: string) => new Host(b, i, name);
  const hosts = [net.host(1, 'a', make), net.host(2, 'b', make), net.host(3, 'c', make), net.host(4, 'd', make)];
  const [a, b, c, d] = hosts as [Host, Host, Host, Host];
  await a.startDaemon();
  await Promise.all([b.startDaemon(['--join', a.ip]), c.startDaemon(['--join', a.ip]), d.startDaemon(['--join', a.ip])]);
  const healthy = [a, b, c];
  const t00 = Date.now();
  for (;;) {
    const views = await Promise.all(hosts.map((h) => h.members()));
    if (views.every((v) => v.filter((m) => m.state === 'alive').length === 4)) break;
    if (Date.now() - t00 > 20_000) throw new Error('cluster did not form');
    await sleep(300);
  }
  const poller = setInterval(() => { const now = Date.now(); for (const h of hosts) h.poll(now); }, 50);
  t.teardown(() => clearInterval(poller));
  const until = async (pred: () => boolean, ms: number): Promise<number> => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) { if (pred()) return Date.now() - t0; await sleep(50); }
    return pred() ? Date.now() - t0 : -1;
  };
  const removedEverywhere = () => healthy.every((h) => h.stateOf('d') === 'dead');

  // --- phase 1: 80 % loss in both directions on d
  const fault = Date.now();
  d.nft(LOSS_TABLE);
  const removed = await until(removedEverywhere, 30_000);
  t.ok(removed >= 0, `d removed from every healthy view ${removed} ms after its link went 80 % lossy (<= 30 s)`);
  await sleep(6000);
  t.ok(removedEverywhere(), 'd kept out while 80 % lossy');

  // --- phase 2: d drops everything 1 s of every 5 s (flapping link)
  d.nft(NO_TABLE);
  const flapEnd = Date.now() + 15_000;
  while (Date.now() < flapEnd) {
    d.nft(DROP_ALL_TABLE);
    await sleep(1000);
    d.nft(NO_TABLE);
    await sleep(4000);
  }
  const sickEnd = Date.now();
  const cameBack = healthy.flatMap((h) => h.transitions.filter((x) => x.member === 'd' && x.to === 'alive' && x.at > fault + removed).map((x) => `${h.name}@${x.at - fault}ms`));
  t.same(cameBack, [], 'd never came back while sick (80 % loss, then flapping)');
  const healthyNames = new Set(healthy.map((h) => h.name));
  const healthyDead = healthy.flatMap((h) => h.transitions.filter((x) => healthyNames.has(x.member) && x.at >= fault && (x.to === 'dead' || x.to === 'left')).map((x) => `${x.member} in ${h.name}'s view`));
  t.same(healthyDead, [], 'no healthy host was declared dead');
  const healthySuspect = healthy.reduce((n, h) => n + h.transitions.filter((x) => healthyNames.has(x.member) && x.at >= fault && x.to === 'suspect').length, 0);
  t.comment(`healthy hosts suspected (alive -> suspect, summed over views): ${healthySuspect}`);

  // --- phase 3: d recovers and returns after its probation (60 probe intervals = 12 s here, doubled per removal)
  const back = await until(() => healthy.every((h) => h.stateOf('d') === 'alive'), 40_000);
  t.ok(back >= 0, `d back in every healthy view ${back} ms after it recovered`);
  t.comment(`real cluster: removed after ${removed} ms; sick for ${sickEnd - fault} ms; back ${back} ms after recovery`);

  // --- issue 9: SIGTERM with an unreachable peer: exit within 2 s
  d.link(false);
  await sleep(300);
  const t0 = Date.now();
  a.daemon.kill('SIGTERM');
  await a.daemon.exited;
  const took = Date.now() - t0;
  t.ok(took < 2000, `a exited ${took} ms after SIGTERM with d unreachable (<= 2 s)`);
});
