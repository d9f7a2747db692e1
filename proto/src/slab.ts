// Typed arrays carved out of shared slabs. Allocating a typed array of its
// own costs a backing store (hundreds of ns, and work for the GC when it
// dies); a view on a slab costs an object. A slab is never reused: views are
// only ever carved from fresh space, and the slab is collected once the last
// view on it is gone, so no array can see another's data. Large arrays get
// a buffer of their own so a slab is not held by one big batch.
// Imports: nothing.

const SLAB_BYTES = 256 * 1024;
const OWN_BUFFER_ABOVE = SLAB_BYTES / 8;

export class ColumnSlab {
  #buffer = new ArrayBuffer(SLAB_BYTES);
  #offset = 0;

  /** Byte offset in #buffer of `bytes` fresh bytes, or -1 for a buffer of their own. */
  #take(bytes: number): number {
    const aligned = (bytes + 7) & ~7;
    if (aligned > OWN_BUFFER_ABOVE) return -1;
    if (this.#offset + aligned > SLAB_BYTES) {
      this.#buffer = new ArrayBuffer(SLAB_BYTES);
      this.#offset = 0;
    }
    const offset = this.#offset;
    this.#offset += aligned;
    return offset;
  }

  /** A zero-filled Float64Array of n elements. */
  float64(n: number): Float64Array {
    const offset = this.#take(n * 8);
    return offset < 0 ? new Float64Array(n) : new Float64Array(this.#buffer, offset, n);
  }

  /** A zero-filled Uint32Array of n elements. */
  uint32(n: number): Uint32Array {
    const offset = this.#take(n * 4);
    return offset < 0 ? new Uint32Array(n) : new Uint32Array(this.#buffer, offset, n);
  }

  /** A zero-filled Uint8Array of n bytes. */
  uint8(n: number): Uint8Array {
    const offset = this.#take(n);
    return offset < 0 ? new Uint8Array(n) : new Uint8Array(this.#buffer, offset, n);
  }

  /** A zero-filled Uint16Array of n elements. */
  uint16(n: number): Uint16Array {
    const offset = this.#take(n * 2);
    return offset < 0 ? new Uint16Array(n) : new Uint16Array(this.#buffer, offset, n);
  }
}

/** The slab the ingest path of this process carves its columns from. */
export const columns = new ColumnSlab();
