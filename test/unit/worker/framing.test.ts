// The worker's framing reader (src/worker/framing.ts) fuzzed in-process: valid frames cut, flipped,
// padded and split at random (seeded), random bytes, random lengths. After each case a last valid
// request must come through; nothing may throw or hang, and what the reader holds stays bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { Message } from 'vscode-jsonrpc/node';
import { FramedMessageReader, MAX_HEADER_BYTES } from '../../../src/worker/framing';
import { rng } from '../helpers/random';

const MAX = 4096;
const TIMEOUT = 25;
const frame = (body: string | Buffer, header?: string) => {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  return Buffer.concat([Buffer.from(header ?? `Content-Length: ${b.length}\r\n\r\n`, 'latin1'), b]);
};
const request = (id: number, extra = '') =>
  frame(JSON.stringify({ jsonrpc: '2.0', id, method: 'status', params: { pad: extra } }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function reader() {
  const input = new PassThrough();
  const got: Message[] = [];
  const answers: { id: unknown; error: { code: number; message: string } }[] = [];
  const logs: string[] = [];
  const r = new FramedMessageReader(input, (m) => answers.push(m as unknown as (typeof answers)[number]), {
    maxMessageBytes: MAX,
    partialTimeoutMs: TIMEOUT,
    log: (l) => logs.push(l),
  });
  r.listen((m) => got.push(m));
  let most = 0;
  const write = (b: Buffer) => {
    input.write(b);
    most = Math.max(most, r.buffered);
  };
  return { r, input, got, answers, logs, write, most: () => most };
}

test('a body that stops arriving is answered after the timeout, and reading goes on', async () => {
  const x = reader();
  const f = request(1);
  x.write(f.subarray(0, f.length - 5));
  await sleep(TIMEOUT * 3);
  assert.equal(x.answers.length, 1);
  assert.equal(x.answers[0]!.error.code, -32700);
  assert.match(
    x.answers[0]!.error.message,
    /^Parse error: \d+ of \d+ bytes of a message arrived, then nothing for 0\.025 s$/,
  );
  x.write(request(2));
  await sleep(5);
  assert.deepEqual(
    x.got.map((m) => (m as unknown as { id: number }).id),
    [2],
  );
  x.input.end();
});

test('framing fuzz: random cuts, flips, lengths and bytes never stop the reader, and memory stays bounded', async () => {
  const r = rng(1818);
  const int = (n: number) => Math.floor(r() * n);
  let sentinel = 100_000;
  let lostFirst = 0;
  for (let c = 0; c < 300; c++) {
    const x = reader();
    const frames = Array.from({ length: 1 + int(4) }, (_, i) => request(c * 10 + i, 'x'.repeat(int(200))));
    let bytes = Buffer.concat(frames);
    switch (c % 6) {
      case 0: // cut anywhere
        bytes = bytes.subarray(0, int(bytes.length));
        break;
      case 1: // flip a few bytes
        bytes = Buffer.from(bytes);
        for (let k = 0; k < 1 + int(4); k++) bytes[int(bytes.length)] = int(256);
        break;
      case 2: // random bytes
        bytes = Buffer.from(Array.from({ length: int(3 * MAX) }, () => int(256)));
        break;
      case 3: // a random length, large or small
        bytes = Buffer.concat([
          frame(
            '{"jsonrpc":"2.0","id":1,"method":"status"}',
            `Content-Length: ${r() < 0.5 ? int(100) : int(1e12)}\r\n\r\n`,
          ),
          bytes,
        ]);
        break;
      case 4: // bytes dropped from the middle
        {
          const a = int(bytes.length);
          bytes = Buffer.concat([bytes.subarray(0, a), bytes.subarray(a + 1 + int(30))]);
        }
        break;
      case 5: // random bytes in between
        {
          const a = int(bytes.length);
          bytes = Buffer.concat([
            bytes.subarray(0, a),
            Buffer.from(Array.from({ length: 1 + int(40) }, () => int(256))),
            bytes.subarray(a),
          ]);
        }
        break;
    }
    // Written in random pieces, as a pipe may deliver them.
    for (let at = 0; at < bytes.length;) {
      const n = 1 + int(r() < 0.2 ? 3 : 700);
      x.write(bytes.subarray(at, at + n));
      at += n;
    }
    // A body left waiting is dropped after the timeout; then a request must come through.
    await sleep(TIMEOUT + 15);
    // The first request after damage may be taken for the rest of a damaged header (then it is
    // skipped with it); the next one must come through.
    const first = ++sentinel;
    const id = ++sentinel;
    x.write(request(first));
    x.write(request(id));
    await sleep(2);
    if (!x.got.some((m) => (m as { id?: number }).id === first)) lostFirst++;
    assert.ok(
      x.got.some((m) => (m as { id?: number }).id === id),
      `case ${c}: the requests after the damage were not read (logs: ${x.logs.join(' | ')})`,
    );
    assert.ok(x.most() <= Math.max(MAX, MAX_HEADER_BYTES) + 700, `case ${c}: the reader held ${x.most()} bytes`);
    for (const m of x.got) assert.equal((m as { jsonrpc?: string }).jsonrpc, '2.0');
    for (const a of x.answers) {
      assert.ok([-32700, -32600].includes(a.error.code), a.error.message);
      assert.ok(a.id === null || typeof a.id === 'number', String(a.id));
    }
    x.input.end();
  }
  assert.ok(lostFirst < 30, `${lostFirst} of 300 first requests after damage were lost`);
});
