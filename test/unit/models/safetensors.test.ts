// safetensors: round trips for every common dtype, the on-disk layout, lazy reads, and clear
// errors for truncated or corrupt files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SafetensorsFile,
  SafetensorsError,
  writeSafetensors,
  safetensorsSize,
} from '../../../src/engine/models/safetensors';
import { floatToBfloat16, floatToHalf } from '../../../src/engine/graph';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'dd-st-'));
}

/** A file written by hand: header JSON plus data bytes. */
function rawFile(path: string, header: unknown, data: Uint8Array, lenOverride?: bigint): void {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, data]));
}

test('safetensors: every dtype round-trips with metadata, aligned header, no temp files', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'a.safetensors');
    const f32 = Float32Array.from([1.5, -2, 3.25, 0, 1e-8, -7]);
    const halfVals = [0.5, -1.25, 65504, 0];
    const f16 = Uint16Array.from(halfVals, floatToHalf);
    const bf16 = Uint16Array.from([1, -3.5, 1e30, 0.0078125], floatToBfloat16);
    const i64 = BigInt64Array.from([1n, -2n, 1n << 40n]);
    const i32 = Int32Array.from([7, -8]);
    const u8 = Uint8Array.from([0, 255, 3]);
    const bool = Uint8Array.from([1, 0]);
    let lazyCalls = 0;
    writeSafetensors(
      path,
      [
        { name: 'w.f32', dtype: 'F32', shape: [2, 3], data: f32 },
        { name: 'w.f16', dtype: 'F16', shape: [4], data: f16 },
        { name: 'w.bf16', dtype: 'BF16', shape: [2, 2], data: bf16 },
        { name: 'ids', dtype: 'I64', shape: [3], data: i64 },
        { name: 'i32', dtype: 'I32', shape: [1, 2], data: i32 },
        { name: 'u8', dtype: 'U8', shape: [3], data: u8 },
        { name: 'mask', dtype: 'BOOL', shape: [2], data: bool },
        { name: 'scalar', dtype: 'F32', shape: [], data: () => (lazyCalls++, Float32Array.of(42)) },
        { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      ],
      { format: 'pt', note: 'héllo' },
    );
    assert.equal(lazyCalls, 1);
    assert.deepEqual(readdirSync(dir), ['a.safetensors'], 'the temporary file was renamed away');

    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0, 'data starts 8-byte aligned');
    const headerText = buf.subarray(8, 8 + n).toString('utf8');
    assert.match(headerText, /^\{.*\} *$/s, 'header is JSON padded with spaces');
    assert.equal(
      buf.length,
      safetensorsSize(
        [
          { name: 'w.f32', dtype: 'F32', shape: [2, 3] },
          { name: 'w.f16', dtype: 'F16', shape: [4] },
          { name: 'w.bf16', dtype: 'BF16', shape: [2, 2] },
          { name: 'ids', dtype: 'I64', shape: [3] },
          { name: 'i32', dtype: 'I32', shape: [1, 2] },
          { name: 'u8', dtype: 'U8', shape: [3] },
          { name: 'mask', dtype: 'BOOL', shape: [2] },
          { name: 'scalar', dtype: 'F32', shape: [] },
          { name: 'empty', dtype: 'F32', shape: [0, 4] },
        ],
        { format: 'pt', note: 'héllo' },
      ),
    );

    const f = SafetensorsFile.open(path);
    try {
      assert.deepEqual(f.metadata, { format: 'pt', note: 'héllo' });
      assert.deepEqual(f.names().sort(), ['empty', 'i32', 'ids', 'mask', 'scalar', 'u8', 'w.bf16', 'w.f16', 'w.f32']);
      assert.deepEqual(f.info('w.bf16'), { dtype: 'BF16', shape: [2, 2] });
      assert.deepEqual(f.info('scalar'), { dtype: 'F32', shape: [] });
      assert.deepEqual(f.float32('w.f32'), f32);
      assert.deepEqual([...f.float32('w.f16')], halfVals);
      const b = f.float32('w.bf16');
      assert.deepEqual([b[0], b[1], b[3]], [1, -3.5, 0.0078125]);
      assert.ok(Math.abs(b[2]! / 1e30 - 1) < 1e-2);
      assert.deepEqual(new BigInt64Array(f.bytes('ids').buffer), i64);
      assert.deepEqual(new Int32Array(f.bytes('i32').buffer), i32);
      assert.deepEqual(f.bytes('u8'), u8);
      assert.deepEqual(f.bytes('mask'), bool);
      assert.deepEqual([...f.float32('scalar')], [42]);
      assert.equal(f.bytes('empty').length, 0);
      assert.throws(() => f.info('nope'), /a\.safetensors: no tensor named "nope"/);
    } finally {
      f.close();
    }
    assert.throws(() => f.bytes('u8'), /closed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('safetensors: a write that fails leaves no file behind', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'b.safetensors');
    assert.throws(
      () => writeSafetensors(path, [{ name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) }]),
      /tensor "x": 8 bytes of data for F32\[3\], which needs 12/,
    );
    assert.throws(
      () =>
        writeSafetensors(path, [
          { name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(1) },
          { name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(1) },
        ]),
      /duplicate/,
    );
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('safetensors: truncated and corrupt files fail with the file name and the reason', () => {
  const dir = tmp();
  try {
    const good = join(dir, 'good.safetensors');
    writeSafetensors(good, [
      { name: 'a', dtype: 'F32', shape: [4], data: new Float32Array(4) },
      { name: 'b', dtype: 'F16', shape: [2], data: new Uint16Array(2) },
    ]);
    const size = readFileSync(good).length;
    const cut = (bytes: number) => {
      const p = join(dir, `cut${bytes}.safetensors`);
      writeFileSync(p, readFileSync(good).subarray(0, bytes));
      return p;
    };
    const expectErr = (p: string, re: RegExp) =>
      assert.throws(
        () => SafetensorsFile.open(p),
        (e: unknown) => {
          assert.ok(e instanceof SafetensorsError, String(e));
          assert.ok(e.message.includes(p), `message names the file: ${e.message}`);
          assert.match(e.message, re);
          return true;
        },
      );
    expectErr(cut(size - 1), /truncated/);
    expectErr(cut(20), /truncated/);
    expectErr(cut(5), /truncated/);
    expectErr(cut(0), /truncated/);
    const p = join(dir, 'x.safetensors');
    truncateSync(good, size - 4);
    expectErr(good, /truncated/);

    rawFile(p, {}, new Uint8Array(0), 1n << 40n);
    expectErr(p, /implausible/);
    writeFileSync(p, Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a":')]));
    expectErr(p, /not valid JSON/);
    rawFile(p, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4));
    expectErr(p, /span 4 bytes but F32\[2\] needs 8/);
    rawFile(p, { a: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4));
    expectErr(p, /dtype "F33" is not supported/);
    rawFile(
      p,
      { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } },
      new Uint8Array(6),
    );
    expectErr(p, /overlap/);
    rawFile(p, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(8));
    expectErr(p, /8 bytes but the tensors account for 4/);
    rawFile(p, { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4));
    expectErr(p, /shape/);
    rawFile(p, [1, 2], new Uint8Array(0));
    expectErr(p, /not a JSON object/);
    assert.throws(() => SafetensorsFile.open(join(dir, 'missing.safetensors')), /missing\.safetensors: file not found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
