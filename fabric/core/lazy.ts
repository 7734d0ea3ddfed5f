/**
 * A value made once on first use and shared after (a JetStream manager, an opened KV bucket); a failed making
 * is not kept, so the next use tries again (JetStream may come up after the caller started).
 */
export function lazyRetrying<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    made ??= make().catch((err: unknown) => {
      made = undefined;
      throw err;
    });
    return made;
  };
}
