/**
 * Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, so the most common
 * typo (`max_stpes`) costs 1 rather than 2.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => {
    const row = new Array<number>(cols).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j < cols; j++) d[0]![j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * "Did you mean" candidates for a misspelt `word`, best first, at most `max`.
 *
 * Comparison ignores case. A candidate whose last `/` or `.` segment matches the word (e.g. `igpt`
 * for `vision/igpt`) also counts as close, because users often type only the leaf name.
 */
export function suggest(word: string, candidates: Iterable<string>, max = 3): string[] {
  const needle = word.toLowerCase();
  const scored: Array<{ candidate: string; score: number }> = [];
  for (const candidate of new Set(candidates)) {
    if (candidate === word) continue;
    const lower = candidate.toLowerCase();
    // The typo budget grows with what differs: `optimizer.lrr` may not become `optimizer.eps`
    // just because the shared `optimizer.` is long.
    const threshold = Math.max(1, Math.floor(withoutSharedSegments(needle, lower).length / 3));
    const leaf = lower.slice(Math.max(lower.lastIndexOf('/'), lower.lastIndexOf('.')) + 1);
    const score = Math.min(editDistance(needle, lower), leaf === lower ? Infinity : editDistance(needle, leaf) + 0.5);
    if (score <= threshold + 0.5) scored.push({ candidate, score });
  }
  scored.sort((x, y) => x.score - y.score || x.candidate.localeCompare(y.candidate));
  return scored.slice(0, max).map((s) => s.candidate);
}

/** `word` without the leading dotted segments it shares with `other` (`a.b.cd`, `a.b.ef` → `cd`). */
function withoutSharedSegments(word: string, other: string): string {
  const a = word.split('.');
  const b = other.split('.');
  let i = 0;
  while (i < a.length - 1 && i < b.length - 1 && a[i] === b[i]) i++;
  return a.slice(i).join('.');
}
