// Optional TLS between daemons: mutual TLS with certificates from a cluster CA,
// on top of the cluster key. Certificates are made here with openssl.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dgram from 'node:dgram';
import t from 'tap';
import { GrpcTransport } from '../src/cluster/grpc';

const KEY = 'correct horse battery staple 0123';

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const p = s.address().port;
  s.close();
  return p;
}

t.test('gRPC with mutual TLS: same CA accepted; plaintext and another CA refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ax-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ext = join(dir, 'san.ext');
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1\n');
  const mk = (name: string) => {
    const o = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}-ca`, '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`]);
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}-node`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
    o(['x509', '-req', '-in', `${name}.csr`, '-CA', `${name}-ca.pem`, '-CAkey', `${name}-ca.key`, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', `${name}.pem`]);
    return { ca: join(dir, `${name}-ca.pem`), cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  };
  const good = mk('cluster');
  const other = mk('other');
  const port = await freePort();
  const server = new GrpcTransport({ bindAddr: `127.0.0.1:${port}`, key: KEY, tls: good });
  server.onRequest(() => Buffer.from('pong over tls'));
  await server.start();
  const peer = new GrpcTransport({ bindAddr: '127.0.0.1:1', key: KEY, tls: good });
  t.equal(Buffer.from(await peer.request(`127.0.0.1:${port}`, Buffer.from('ping'), 5000)).toString(), 'pong over tls');
  const plain = new GrpcTransport({ bindAddr: '127.0.0.1:1', key: KEY });
  await t.rejects(plain.request(`127.0.0.1:${port}`, Buffer.from('ping'), 3000), 'a plaintext peer cannot talk to a TLS node');
  const stranger = new GrpcTransport({ bindAddr: '127.0.0.1:1', key: KEY, tls: other });
  await t.rejects(stranger.request(`127.0.0.1:${port}`, Buffer.from('ping'), 3000), 'a certificate from another CA is refused');
  t.equal(server.stats.served, 1, 'only the TLS peer with the cluster CA was served');
  await peer.close();
  await plain.close();
  await stranger.close();
  await server.close();
});
