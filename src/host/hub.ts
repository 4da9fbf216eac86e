// Downloads a model from the Hugging Face hub (or a mirror with the same URLs, HF_ENDPOINT):
// only the files the engine reads, each resumed from its .part file after an interruption,
// verified (size, and the sha256 of LFS files or the git blob id of the others), then renamed into
// place. A listing without a file's size or hash is refused before anything is written. Cancellable.
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  writeSync,
  renameSync,
  statSync,
  rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

export const looksLikeHubId = (s: string): boolean =>
  /^[A-Za-z0-9][\w.-]{0,95}\/[\w.-]{1,96}$/.test(s) && !s.includes('..');

const WANTED =
  /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|chat_template\.(jinja|json)|model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json)$/;

interface Sibling {
  rfilename: string;
  size?: number;
  /** The git object id of the file: sha1 of "blob <size>\0" + content (for LFS files, of the pointer). */
  blobId?: string;
  lfs?: { sha256: string; size: number };
}

export interface DownloadOptions {
  endpoint?: string;
  revision?: string;
  token?: string;
  signal?: AbortSignal;
  onProgress?: (doneBytes: number, totalBytes: number, file: string) => void;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The git blob id of a file, as the hub lists it for files stored in git (not LFS). */
async function gitBlobId(path: string): Promise<string> {
  const h = createHash('sha1').update(`blob ${statSync(path).size}\0`);
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** What a listed file lacks for its download to be verified, or undefined when it has it all. */
function unverifiable(f: Sibling): string | undefined {
  const size = f.lfs?.size ?? f.size;
  if (!(typeof size === 'number' && Number.isSafeInteger(size) && size >= 0)) return 'no size';
  if (f.lfs) return typeof f.lfs.sha256 === 'string' && /^[0-9a-f]{64}$/.test(f.lfs.sha256) ? undefined : 'no sha256';
  return typeof f.blobId === 'string' && /^[0-9a-f]{40}$/.test(f.blobId) ? undefined : 'no hash';
}

export async function downloadFromHub(repo: string, dest: string, o: DownloadOptions = {}): Promise<string[]> {
  if (!looksLikeHubId(repo)) throw new Error(`"${repo}" is not a hub model id (owner/name)`);
  const endpoint = (o.endpoint ?? 'https://huggingface.co').replace(/\/$/, '');
  const rev = encodeURIComponent(o.revision ?? 'main');
  const headers: Record<string, string> = o.token ? { authorization: `Bearer ${o.token}` } : {};
  const info = await fetch(`${endpoint}/api/models/${repo}/revision/${rev}?blobs=true`, { headers, signal: o.signal });
  if (info.status === 401 || info.status === 403)
    throw new Error(`${repo}: access denied (${info.status}); set HF_TOKEN for gated models`);
  if (info.status === 404) throw new Error(`${repo}: no such model on ${endpoint}`);
  if (!info.ok) throw new Error(`${repo}: the hub answered ${info.status} ${info.statusText}`);
  const meta = (await info.json()) as { siblings?: Sibling[] };
  const files = (meta.siblings ?? []).filter((s) => WANTED.test(s.rfilename));
  if (!files.some((f) => /\.safetensors$/.test(f.rfilename)))
    throw new Error(`${repo} has no safetensors weights; DocDistill never loads pickle (.bin) files`);
  if (!files.some((f) => f.rfilename === 'config.json')) throw new Error(`${repo} has no config.json`);
  const lacking = files.flatMap((f) => {
    const why = unverifiable(f);
    return why ? [`${f.rfilename} (${why})`] : [];
  });
  if (lacking.length) {
    throw new Error(
      `${repo}: ${endpoint} lists ${lacking.join(', ')}: refusing to download files that cannot be verified. The hub gives each file's size and sha256 or git blob id; a mirror must too (or download the model yourself and pick its folder)`,
    );
  }
  const total = files.reduce((a, f) => a + (f.lfs?.size ?? f.size ?? 0), 0);
  let done = 0;
  mkdirSync(dest, { recursive: true });
  for (const f of files) {
    if (o.signal?.aborted) throw new Error('download cancelled; start it again to resume');
    const size = f.lfs?.size ?? f.size;
    const final = join(dest, f.rfilename);
    const part = `${final}.part`;
    if (existsSync(final) && (size === undefined || statSync(final).size === size)) {
      done += size ?? 0;
      o.onProgress?.(done, total, f.rfilename);
      continue;
    }
    mkdirSync(dirname(final), { recursive: true });
    let have = existsSync(part) ? statSync(part).size : 0;
    if (size !== undefined && have > size) {
      rmSync(part);
      have = 0;
    }
    if (size === undefined || have < size) {
      const res = await fetch(`${endpoint}/${repo}/resolve/${rev}/${f.rfilename}`, {
        headers: { ...headers, ...(have ? { range: `bytes=${have}-` } : {}) },
        signal: o.signal,
        redirect: 'follow',
      });
      if (!res.ok || !res.body) throw new Error(`${f.rfilename}: the hub answered ${res.status} ${res.statusText}`);
      if (have && res.status !== 206) have = 0; // the server ignored the range: start over
      const fd = openSync(part, have ? 'a' : 'w');
      try {
        done += have;
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          writeSync(fd, chunk);
          done += chunk.byteLength;
          o.onProgress?.(done, total, f.rfilename);
        }
      } catch (e) {
        if (o.signal?.aborted) throw new Error('download cancelled; start it again to resume');
        const cause = (e as { cause?: { message?: string } }).cause?.message;
        throw new Error(
          `${f.rfilename}: the connection broke (${cause ?? (e as Error).message}); start again to resume from ${(statSync(part).size / 2 ** 20).toFixed(1)} MB`,
        );
      } finally {
        closeSync(fd);
      }
    } else done += have;
    const got = statSync(part).size;
    if (size !== undefined && got !== size)
      throw new Error(`${f.rfilename}: got ${got} bytes, expected ${size}; start again to resume`);
    const [kind, want, got2] = f.lfs
      ? ['sha256', f.lfs.sha256, await sha256File(part)]
      : ['git blob id', f.blobId!, await gitBlobId(part)];
    if (got2 !== want) {
      rmSync(part);
      throw new Error(
        `${f.rfilename}: checksum mismatch (${kind} ${got2.slice(0, 12)}… ≠ ${want.slice(0, 12)}…); the partial file was removed, start again`,
      );
    }
    renameSync(part, final);
  }
  return files.map((f) => f.rfilename);
}
