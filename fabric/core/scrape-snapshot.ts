/** How long one reading of the sources serves: every metric of one scrape is collected within it. */
const SNAPSHOT_TTL_MS = 250;

/**
 * What several metrics read from the same sources at scrape time (a server's monitoring endpoints, a site's
 * report): read once per scrape, not once per metric. Sources are registered while they exist.
 */
export class ScrapeSnapshot<S, R> {
  private readonly sources = new Set<S>();
  private cached: { at: number; readings: Promise<R[]> } | undefined;

  constructor(private readonly read: (sources: readonly S[]) => Promise<R[]>) {}

  /** Adds a source until the returned function is called. */
  add(source: S): () => void {
    this.sources.add(source);
    this.cached = undefined;
    return () => {
      this.sources.delete(source);
      this.cached = undefined;
    };
  }

  readings(): Promise<R[]> {
    const now = Date.now();
    if (this.cached === undefined || now - this.cached.at > SNAPSHOT_TTL_MS) this.cached = { at: now, readings: this.read([...this.sources]) };
    return this.cached.readings;
  }
}
