// Draws media/icon.png (128×128): a document page whose lines flow into a small network.
// Pure Node (zlib); run once, the PNG is committed.
import { deflateSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';

const N = 128;
const px = new Uint8Array(N * N * 4);
const set = (x, y, [r, g, b, a]) => {
  if (x < 0 || y < 0 || x >= N || y >= N) return;
  const i = (y * N + x) * 4;
  const al = a / 255;
  px[i] = Math.round(px[i] * (1 - al) + r * al);
  px[i + 1] = Math.round(px[i + 1] * (1 - al) + g * al);
  px[i + 2] = Math.round(px[i + 2] * (1 - al) + b * al);
  px[i + 3] = Math.max(px[i + 3], a);
};
const disc = (cx, cy, r, c) => {
  for (let y = -r - 1; y <= r + 1; y++)
    for (let x = -r - 1; x <= r + 1; x++) {
      const d = Math.hypot(x, y) - r;
      if (d < 0.5) set(cx + x, cy + y, [c[0], c[1], c[2], Math.round(255 * Math.min(1, 0.5 - d))]);
    }
};
const rect = (x0, y0, x1, y1, c) => {
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) set(x, y, c);
};
const line = (x0, y0, x1, y1, w, c) => {
  const n = Math.ceil(Math.hypot(x1 - x0, y1 - y0));
  for (let i = 0; i <= n; i++) disc(Math.round(x0 + ((x1 - x0) * i) / n), Math.round(y0 + ((y1 - y0) * i) / n), w, c);
};
// Rounded background.
for (let y = 0; y < N; y++)
  for (let x = 0; x < N; x++) {
    const dx = Math.max(0, Math.abs(x - 63.5) - 44),
      dy = Math.max(0, Math.abs(y - 63.5) - 44);
    const d = Math.hypot(dx, dy) - 18;
    if (d < 0.5) {
      const t = y / N;
      set(x, y, [
        Math.round(40 + 30 * t),
        Math.round(70 + 40 * t),
        Math.round(160 + 50 * t),
        Math.round(255 * Math.min(1, 0.5 - d)),
      ]);
    }
  }
// Page with text lines.
rect(22, 24, 66, 104, [245, 247, 250, 255]);
for (let i = 0; i < 6; i++) rect(28, 34 + i * 11, 60 - (i % 3) * 6, 38 + i * 11, [120, 135, 160, 255]);
// Flow into nodes.
const nodes = [
  [92, 40],
  [104, 64],
  [92, 88],
];
for (const [x, y] of nodes) line(66, 64, x, y, 1, [255, 214, 102, 255]);
line(92, 40, 104, 64, 1, [255, 214, 102, 200]);
line(104, 64, 92, 88, 1, [255, 214, 102, 200]);
for (const [x, y] of nodes) {
  disc(x, y, 7, [255, 214, 102, 255]);
  disc(x, y, 3, [60, 90, 190, 255]);
}

const crc = (buf) => {
  let c,
    crcTable = [];
  for (let n = 0; n < 256; n++) {
    c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crcTable[n] = c >>> 0;
  }
  let x = 0xffffffff;
  for (const b of buf) x = crcTable[(x ^ b) & 0xff] ^ (x >>> 8);
  return (x ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(crc(td));
  return Buffer.concat([len, td, c]);
};
const raw = Buffer.alloc(N * (N * 4 + 1));
for (let y = 0; y < N; y++) {
  raw[y * (N * 4 + 1)] = 0;
  Buffer.from(px.buffer, y * N * 4, N * 4).copy(raw, y * (N * 4 + 1) + 1);
}
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(N, 0);
ihdr.writeUInt32BE(N, 4);
ihdr[8] = 8;
ihdr[9] = 6;
writeFileSync(
  'media/icon.png',
  Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]),
);
console.log('media/icon.png written');
