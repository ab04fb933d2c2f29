// Reconnect delays: capped exponential backoff with jitter, so a daemon
// restart is picked up within a second or two and a daemon that stays
// away is not hammered, and several browsers do not retry in step.

export const BACKOFF = Object.freeze({ baseMs: 1000, capMs: 30000, jitter: 0.2 });

/** The wait before reconnect attempt `attempt` (0 = the first retry). */
export function retryDelay(attempt, random = Math.random, b = BACKOFF) {
  const exp = Math.min(b.capMs, b.baseMs * 2 ** Math.min(attempt, 30));
  const spread = 1 - b.jitter + 2 * b.jitter * random();
  return Math.round(Math.min(b.capMs, exp * spread));
}
