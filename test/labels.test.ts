import t from 'tap';
import { LabelError, mayConnect, parseLabels, formatLabels } from '../src/policy/labels';

t.test('parses labels', async (t) => {
  t.same(parseLabels('zone=a,tier=web'), { zone: 'a', tier: 'web' });
  t.same(parseLabels(''), { zone: 'default' });
  t.equal(formatLabels({ b: '2', a: '1' }), 'a=1,b=2');
});

t.test('bad labels say what and where', async (t) => {
  t.throws(() => parseLabels('zone=a,tier'), /label 2 \("tier"\): expected key=value/);
  t.throws(() => parseLabels('=x'), /key "" must be/);
  t.throws(() => parseLabels('a=b,a=c'), /given twice/);
  t.throws(() => parseLabels('a=b c'), /value "b c"/);
  t.throws(() => parseLabels('a=b'.padEnd(80, 'x')), /must be at most 63/);
  t.ok(new LabelError('x') instanceof Error);
});

t.test('access needs one shared label', async (t) => {
  t.ok(mayConnect({ zone: 'a' }, { zone: 'a', x: 'y' }));
  t.notOk(mayConnect({ zone: 'a' }, { zone: 'b' }));
  t.notOk(mayConnect({ zone: 'a' }, { tier: 'a' }));
});
