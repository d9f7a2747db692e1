// The frame sequence rule of the live protocol (proto/README.md, "Frames"):
// seq is 1, 2, 3... per connection with no gaps. Kept apart from the store:
// it is about the connection, which LiveClient owns, not about the data.

/**
 * Sequence check for one connection. Returns false on a gap (the caller must
 * resubscribe) and moves on to the new seq.
 */
export class SeqGuard {
  private last = 0;
  reset(): void {
    this.last = 0;
  }
  accept(seq: number): boolean {
    const ok = seq === this.last + 1;
    this.last = seq;
    return ok;
  }
}
