export function median(values: number[]): number;
export function summarize(runs: unknown[], seqLen: number): unknown;
export function table(header: string[], rows: unknown[][]): string;
export function formatReport(results: unknown): string;
export function formatProfile(run: unknown, top?: number): string;
