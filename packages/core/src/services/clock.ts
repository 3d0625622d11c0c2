import type { Clock } from './tokens.js';

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
}
