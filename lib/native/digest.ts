// SHA-256 with checkpoints (digest.cc; format in native/core/digest_chain.h):
// a layer tar's chaining state every few MiB, recorded at import, lets an
// export verify the tar's segments in parallel and still prove its DiffID.
import { native } from './binding.js';

/** Hashes a stream fed in order on the calling thread, as crypto's Hash does. */
export class DigestChain {
  private readonly inner = new native.DigestChain();

  update(chunk: Buffer): void {
    this.inner.update(chunk);
  }

  /** 'sha256:<hex>' of everything fed, and the serialized checkpoints. */
  finish(): { digest: string; checkpoints: Buffer } {
    return this.inner.finish();
  }
}

/**
 * Hashes `data`, which follows `bytesBefore` bytes of a stream that left
 * `state` (null at the start), on the libuv pool. Resolves the 32-byte end
 * state, or with `final` the digest bytes.
 */
export function hashSegment(data: Buffer, state: Buffer | null, bytesBefore: number, final: boolean): Promise<Buffer> {
  return native.hashSegment(data, state, bytesBefore, final);
}

/** Parsed checkpoints: the state after each `interval` bytes, inside the stream. */
export interface Checkpoints {
  interval: number;
  states: Buffer[];
}

/** Whatever does not parse counts as no checkpoints: the export then hashes in sequence. */
export function parseCheckpoints(serialized: Buffer | null | undefined, fallbackInterval: number): Checkpoints {
  if (!serialized || serialized.length < 4 || (serialized.length - 4) % 32 !== 0) return { interval: fallbackInterval, states: [] };
  const interval = serialized.readUInt32LE(0);
  // A segment is read in one native call, of at most 64 MiB.
  if (interval === 0 || interval % 64 !== 0 || interval > 64 << 20) return { interval: fallbackInterval, states: [] };
  const states: Buffer[] = [];
  for (let at = 4; at < serialized.length; at += 32) states.push(serialized.subarray(at, at + 32));
  return { interval, states };
}
