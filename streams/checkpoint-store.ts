import { nuid } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { z } from "zod";

/**
 * A checkpoint's manifest (the key that compare-and-set guards): the input position, the processing clock, and
 * the generation of the state chunks. State is written in chunks (`<key>.s<generation>.<i>`, 256 KiB each)
 * before the manifest, so a state of many keys fits under the server's max payload and is never seen half
 * written. A generation is `<claim>.<a|b>`: each owner writes its own two slots in turn (the one the manifest
 * does not point at), so the bucket does not grow with every checkpoint, and a fenced previous owner, having
 * another claim id, can never overwrite the chunks the manifest points at.
 */
const manifestSchema = z.strictObject({
  seq: z.number().int().min(0),
  clock: z.number().min(0),
  generation: z.string(),
  chunks: z.number().int().min(0),
});
const CHUNK_CHARS = 256 * 1024;

export interface Checkpoint {
  /** The last source sequence the state includes. */
  seq: number;
  /** The processing time (stream timestamps) the state has seen. */
  clock: number;
  /** The operator state as JSON text, or undefined for a fresh start. */
  state: string | undefined;
}

/** Thrown when the manifest changed under us: another worker owns the partition now. */
export class FencedError extends Error {
  constructor(key: string) {
    super(`checkpoint ${key} was written by another worker`);
  }
}

/**
 * The checkpoints of one window partition in KV. `claim` reads the latest and rewrites its manifest, so a
 * previous owner's next write (still holding the older revision) is refused: that is the fence. Every `save`
 * is a compare-and-set on the revision we hold.
 */
export class CheckpointStore {
  private revision = 0;
  private generation = "";
  private chunks = 0;
  private readonly claimId = nuid.next();

  constructor(
    private readonly kv: KV,
    readonly key: string,
  ) {}

  /**
   * Reads the latest checkpoint and rewrites its manifest under our revision. A previous owner still writing
   * (a zombie whose lease expired) can slip a checkpoint in between: then read again, a few times.
   */
  async claim(): Promise<Checkpoint> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.claimOnce();
      } catch (err) {
        if (attempt >= 5 || !(err instanceof Error) || !/wrong last sequence/.test(err.message)) throw err;
      }
    }
  }

  private async claimOnce(): Promise<Checkpoint> {
    const entry = await this.kv.get(this.key);
    let cp: Checkpoint = { seq: 0, clock: 0, state: undefined };
    let manifest: string;
    if (entry !== null && entry.operation === "PUT" && entry.length > 0) {
      const m = manifestSchema.parse(entry.json());
      let text = "";
      for (let i = 0; i < m.chunks; i++) {
        const c = await this.kv.get(`${this.key}.s${m.generation}.${i}`);
        if (c === null || c.operation !== "PUT") throw new Error(`checkpoint ${this.key} is missing chunk ${i}`);
        text += c.string();
      }
      cp = { seq: m.seq, clock: m.clock, state: m.chunks === 0 ? undefined : text };
      this.generation = m.generation;
      this.chunks = m.chunks;
      manifest = entry.string();
    } else {
      manifest = JSON.stringify({ seq: 0, clock: 0, generation: "", chunks: 0 });
    }
    this.revision = entry === null ? await this.kv.create(this.key, manifest) : await this.kv.update(this.key, manifest, entry.revision);
    return cp;
  }

  /**
   * Writes state and position (`state` undefined: unchanged since the last save, only the position moves);
   * FencedError if another worker claimed the partition since.
   */
  async save(state: string | undefined, seq: number, clock: number): Promise<void> {
    if (state === undefined) {
      await this.writeManifest({ seq, clock, generation: this.generation, chunks: this.chunks });
      return;
    }
    const gen = `${this.claimId}.${this.generation === `${this.claimId}.a` ? "b" : "a"}`;
    const chunks = Math.ceil(state.length / CHUNK_CHARS);
    for (let i = 0; i < chunks; i++) await this.kv.put(`${this.key}.s${gen}.${i}`, state.slice(i * CHUNK_CHARS, (i + 1) * CHUNK_CHARS));
    await this.writeManifest({ seq, clock, generation: gen, chunks });
    // a previous owner's chunks are garbage now (our own other slot is overwritten next time)
    if (!this.generation.startsWith(`${this.claimId}.`)) {
      for (let i = 0; i < this.chunks; i++) await this.kv.purge(`${this.key}.s${this.generation}.${i}`).catch(() => undefined);
    }
    this.generation = gen;
    this.chunks = chunks;
  }

  private async writeManifest(m: z.output<typeof manifestSchema>): Promise<void> {
    try {
      this.revision = await this.kv.update(this.key, JSON.stringify(m), this.revision);
    } catch {
      throw new FencedError(this.key);
    }
  }

}
