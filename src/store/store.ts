// Persistent daemon state in LevelDB. Keys are "<kind>/<id>", values JSON.
// Writes are queued in order and applied in batches, so the hot path never
// waits on the disk; flush() waits for everything queued so far.
import { chmodSync, mkdirSync } from 'node:fs';
import { Level } from 'level';

/** policy: rule records by id (src/policy/decide.ts PolicyRecord), tombstones included. */
export type Kind = 'app' | 'sock' | 'meta' | 'cluster' | 'policy';

/** What a sublevel offers its user: ordered keys, JSON values, atomic batches. */
export interface KeySpace {
  batch(ops: Op[]): Promise<void>;
  get(key: string): Promise<unknown>;
  iterator(opts: { gt?: string; gte?: string; lt?: string; lte?: string; reverse?: boolean; limit?: number; values?: boolean }): AsyncIterable<[string, unknown]>;
}

export type Op = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

export class Store {
  private readonly db: Level<string, unknown>;
  private queue: Op[] = [];
  private writing: Promise<void> | null = null;

  /** Called when a write fails (the daemon logs it; state stays in memory). */
  onError: (e: Error) => void = () => {};

  private constructor(readonly dir: string) {
    this.db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
  }

  static async open(dir: string, clean: boolean): Promise<Store> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // App tokens live here: an existing directory is made private too.
    chmodSync(dir, 0o700);
    const s = new Store(dir);
    try {
      await s.db.open();
    } catch (e) {
      const cause = (e as { cause?: Error }).cause;
      throw new Error(
        `cannot open the state database in ${dir}: ${cause?.message ?? (e as Error).message}` +
          (/lock/i.test(String(cause?.message)) ? ' (is another ax daemon using this --state-dir?)' : ''),
      );
    }
    if (clean) await s.db.clear();
    return s;
  }

  put(kind: Kind, id: string, value: unknown): void {
    this.queue.push({ type: 'put', key: `${kind}/${id}`, value });
    this.kick();
  }

  del(kind: Kind, id: string): void {
    this.queue.push({ type: 'del', key: `${kind}/${id}` });
    this.kick();
  }

  /**
   * A separate key space of this database (an abstract-level sublevel: keys are stored
   * as "!name!key"), with JSON values, for modules that keep their own records (the
   * audit ring). It shares the database's lifetime: open after open(), closed by close();
   * --clean clears it too.
   */
  sublevel(name: string): KeySpace {
    return this.db.sublevel<string, unknown>(name, { valueEncoding: 'json' });
  }

  async get<T>(kind: Kind, id: string): Promise<T | undefined> {
    await this.flush();
    const v = await this.db.get(`${kind}/${id}`);
    return v as T | undefined;
  }

  async list<T>(kind: Kind): Promise<T[]> {
    await this.flush();
    const out: T[] = [];
    for await (const [, v] of this.db.iterator({ gt: `${kind}/`, lt: `${kind}/\xff` })) out.push(v as T);
    return out;
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = (async () => {
      try {
        while (this.queue.length > 0) {
          const batch = this.queue;
          this.queue = [];
          await this.db.batch(batch);
        }
      } catch (e) {
        this.onError(e as Error);
      } finally {
        this.writing = null;
      }
    })();
  }

  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.db.close();
  }
}
