// The safetensors format for specs (8-byte little-endian header length, a JSON header, the raw
// tensors), F32 and BF16 only: tiny base models and adapters for the merge specs, and reading
// what the merge wrote.
import { readFileSync, writeFileSync } from 'node:fs';

export interface Tensor {
  dtype: 'F32' | 'BF16';
  shape: number[];
  /** Row-major values (BF16 values must be exact in bfloat16 for a round trip). */
  data: number[];
}

export function writeSafetensors(path: string, tensors: Record<string, Tensor>): void {
  const header: Record<string, unknown> = {};
  const blobs: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const f32 = Buffer.from(new Float32Array(t.data).buffer);
    let blob = f32;
    if (t.dtype === 'BF16') {
      // bfloat16 is the high half of a float32.
      blob = Buffer.alloc(t.data.length * 2);
      for (let i = 0; i < t.data.length; i++) blob.writeUInt16LE(f32.readUInt32LE(i * 4) >>> 16, i * 2);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + blob.length] };
    blobs.push(blob);
    offset += blob.length;
  }
  let head = Buffer.from(JSON.stringify(header), 'utf8');
  head = Buffer.concat([head, Buffer.alloc(-head.length & 7, ' ')]);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(head.length));
  writeFileSync(path, Buffer.concat([size, head, ...blobs]));
}

export function readSafetensors(path: string): Record<string, Tensor> {
  const raw = readFileSync(path);
  const size = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + size).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  delete header.__metadata__;
  const body = raw.subarray(8 + size);
  const out: Record<string, Tensor> = {};
  for (const [
    name,
    {
      dtype,
      shape,
      data_offsets: [start, end],
    },
  ] of Object.entries(header)) {
    const bytes = body.subarray(start, end);
    const data: number[] = [];
    if (dtype === 'F32') for (let i = 0; i < bytes.length; i += 4) data.push(bytes.readFloatLE(i));
    else if (dtype === 'BF16') {
      const word = Buffer.alloc(4);
      for (let i = 0; i < bytes.length; i += 2) {
        word.writeUInt32LE((bytes.readUInt16LE(i) << 16) >>> 0);
        data.push(word.readFloatLE(0));
      }
    } else throw new Error(`readSafetensors: ${name} is ${dtype}`);
    out[name] = { dtype, shape, data };
  }
  return out;
}

/** Row-major matrix product of a (n×k) and b (k×m). */
export function matmul(a: number[], b: number[], n: number, k: number, m: number): number[] {
  const out = new Array<number>(n * m).fill(0);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) for (let x = 0; x < k; x++) out[i * m + j]! += a[i * k + x]! * b[x * m + j]!;
  return out;
}

export function transpose(a: number[], n: number, m: number): number[] {
  const out = new Array<number>(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[j * n + i] = a[i * m + j]!;
  return out;
}
