// The /tmp fallback for the socket directory (no XDG_RUNTIME_DIR): made private, and an
// existing one used only when it is this uid's own directory that nobody else may write.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { privateTmpDir } from '../src/common/paths';

const base = mkdtempSync(join(tmpdir(), 'ax-paths-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));

t.test('missing: made 0700 and owned by this uid', async (t) => {
  const d = join(base, 'new');
  t.equal(privateTmpDir(d), d);
  const st = statSync(d);
  t.equal(st.mode & 0o777, 0o700);
  t.equal(st.uid, process.getuid!());
  t.equal(privateTmpDir(d), d, 'then used as it is');
});

t.test('refused: another owner, writable by others, a symlink', async (t) => {
  const other = join(base, 'other');
  mkdirSync(other, { mode: 0o700 });
  chownSync(other, 65534, 65534);
  t.throws(() => privateTmpDir(other), /belongs to uid 65534, not to you .*set XDG_RUNTIME_DIR/);
  const open = join(base, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  t.throws(() => privateTmpDir(open), /writable by others \(mode 777\)/);
  const link = join(base, 'link');
  symlinkSync(join(base, 'new'), link);
  t.throws(() => privateTmpDir(link), /not a directory \(a symlink or a file\)/);
});
