// Fuzzing the safetensors header parser, seeded and quick: random bytes, random truncations, flipped
// bytes and hostile-but-valid JSON headers. Every outcome must be either a file that opens and
// reads back, or a SafetensorsError naming the file; never another exception, a hang, or a large
// allocation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsError, SafetensorsFile, writeSafetensors } from '../../../src/engine/models/safetensors';
import { rng } from '../helpers/random';

/** Opens `bytes` as a safetensors file; returns 'ok' (after reading every tensor) or the error. */
function attempt(path: string, bytes: Uint8Array): 'ok' | SafetensorsError {
  writeFileSync(path, bytes);
  let f: SafetensorsFile | undefined;
  try {
    f = SafetensorsFile.open(path);
    for (const n of f.names()) {
      try {
        f.float32(n);
      } catch (e) {
        // F8 tensors cannot be widened; that refusal is a SafetensorsError too.
        if (!(e instanceof SafetensorsError)) throw e;
      }
    }
    return 'ok';
  } catch (e) {
    if (!(e instanceof SafetensorsError))
      throw new Error(
        `not a SafetensorsError for ${bytes.length} bytes ${Buffer.from(bytes.subarray(0, 200)).toString('latin1')}: ${(e as Error).stack}`,
      );
    assert.ok(e.message.startsWith(`${path}: `), `the message names the file: ${e.message}`);
    return e;
  } finally {
    f?.close();
  }
}

/** A file with the given header object (serialized as is) followed by `dataBytes` bytes. */
function withHeader(header: unknown, dataBytes: number, headerLen?: bigint): Uint8Array {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(h.length));
  return Buffer.concat([len, h, Buffer.alloc(dataBytes, 7)]);
}

test('safetensors fuzz: truncations, flipped bytes, random bytes and hostile headers give a clear error or a readable file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-stfuzz-'));
  const rssBefore = process.memoryUsage().rss;
  const t0 = Date.now();
  try {
    const r = rng(20261203);
    const int = (n: number) => Math.floor(r() * n);
    const good = join(dir, 'good.safetensors');
    writeSafetensors(
      good,
      [
        { name: 'a', dtype: 'F32', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i) },
        { name: 'b', dtype: 'F16', shape: [5], data: new Uint16Array(5).fill(0x3c00) },
        { name: 'c', dtype: 'BF16', shape: [2, 2], data: new Uint16Array(4).fill(0x3f80) },
        { name: 'd', dtype: 'I64', shape: [2], data: new BigInt64Array([1n, -2n]) },
        { name: 'e', dtype: 'F8_E4M3', shape: [3], data: new Uint8Array(3) },
      ],
      { format: 'pt' },
    );
    const base = new Uint8Array(readFileSync(good));
    const path = join(dir, 'x.safetensors');
    assert.equal(attempt(path, base), 'ok');
    const outcomes = { ok: 0, error: 0 };
    const count = (o: 'ok' | SafetensorsError) => outcomes[o === 'ok' ? 'ok' : 'error']++;

    // Every truncation of a valid file is refused (it is shorter than its header says).
    for (let n = 0; n < base.length; n += 1 + int(3))
      assert.notEqual(attempt(path, base.subarray(0, n)), 'ok', `truncated at ${n}`);

    // One to four flipped bytes anywhere (mostly in the header, where the parser is).
    for (let i = 0; i < 600; i++) {
      const b = base.slice();
      for (let k = 0, m = 1 + int(4); k < m; k++)
        b[r() < 0.8 ? int(Math.min(b.length, 8 + 200)) : int(b.length)] = int(256);
      count(attempt(path, b));
    }

    // Random bytes, with a random or a plausible header length in front.
    for (let i = 0; i < 300; i++) {
      const b = Uint8Array.from({ length: int(300) }, () => int(256));
      if (b.length >= 8 && r() < 0.5) Buffer.from(b.buffer).writeBigUInt64LE(BigInt(int(b.length)), 0);
      count(attempt(path, b));
    }

    // Valid JSON with hostile values where sizes go: the parser must refuse without allocating.
    const sizes = [-1, 0.5, 1e300, 2 ** 53, 2 ** 60, 2 ** 31, 1e9, '12', null, [], {}];
    const pick = () => sizes[int(sizes.length)];
    for (let i = 0; i < 300; i++) {
      const header: Record<string, unknown> = { t: { dtype: 'F32', shape: [int(4), int(4)], data_offsets: [0, 0] } };
      const t = header.t as Record<string, unknown>;
      switch (int(6)) {
        case 0:
          t.shape = [pick(), pick()];
          break;
        case 1:
          t.data_offsets = [pick(), pick()];
          break;
        case 2:
          t.dtype = ['toString', '__proto__', 'constructor', 'F128', 7, null][int(6)];
          break;
        case 3:
          t.shape = Array.from({ length: 1 + int(40) }, () => 1 + int(2 ** 20));
          break;
        case 4:
          header.__metadata__ = [pick(), { k: pick() }, 'x'][int(3)];
          break;
        default:
          header.u = pick();
      }
      count(attempt(path, withHeader(header, int(64))));
    }

    // Header lengths that point past the end, to the limit, or beyond it: refused before reading.
    // (The buffer for the header is allocated only once the file is known to hold it.)
    for (const len of [2n ** 64n - 1n, 2n ** 63n, 100_000_001n, 2n ** 32n]) {
      assert.match((attempt(path, withHeader('{}', 16, len)) as Error).message, /header length \d+ is implausible/);
    }
    for (const len of [100_000_000n, 99_999_999n, 19n]) {
      assert.match(
        (attempt(path, withHeader('{}', 16, len)) as Error).message,
        /the header says it is \d+ bytes but the file has only 18 after the length \(truncated\)/,
      );
    }
    // Deeply nested JSON and a lone "__proto__" tensor.
    count(attempt(path, withHeader('['.repeat(200_000) + ']'.repeat(200_000), 0)));
    count(attempt(path, withHeader('{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)));

    assert.ok(outcomes.error > 0 && outcomes.ok > 0, `both outcomes occur: ${JSON.stringify(outcomes)}`);
    assert.deepEqual(readdirSync(dir).sort(), ['good.safetensors', 'x.safetensors'], 'no stray files');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Quick and small: no input may make the parser read or allocate more than the file holds.
  assert.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0} ms`);
  assert.ok(
    process.memoryUsage().rss - rssBefore < 64 * 2 ** 20,
    `rss grew by ${((process.memoryUsage().rss - rssBefore) / 2 ** 20).toFixed(0)} MB`,
  );
});
