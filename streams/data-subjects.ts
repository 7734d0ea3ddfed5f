import { isToken, subjectProblem } from "../fabric/core/index.js";

/**
 * The subjects of the fabric's data streams (DESIGN.md contracts), by their first token: how many tokens follow
 * it (at least / at most) and what they are. Everything else (`$JS.API.>`, `$KV.>`, `rejected.>`, inboxes, a
 * subject no stream stores) is not data a client may publish into the fabric.
 */
const DATA_SUBJECTS: Readonly<Record<string, { stream: string; min: number; max: number; shape: string }>> = {
  telemetry: { stream: "TELEMETRY", min: 3, max: 3, shape: "telemetry.<site>.<device>.<metric>" },
  events: { stream: "EVENTS", min: 3, max: 3, shape: "events.<site>.<device>.<type>" },
  cmd: { stream: "COMMANDS", min: 3, max: 3, shape: "cmd.<site>.<device>.<name>" },
  // a window's key is site.device.metric by default, but a definition may key on other tokens
  agg: { stream: "AGGREGATES", min: 2, max: 16, shape: "agg.<window>.<key tokens>" },
};

/** The data stream a subject belongs to, or why it is no data subject (the message names the shapes allowed). */
export function dataSubjectStream(subject: string): { stream: string } | { problem: string } {
  const problem = subjectProblem(subject);
  if (problem !== undefined) return { problem };
  const [head = "", ...rest] = subject.split(".");
  const shapes = Object.values(DATA_SUBJECTS)
    .map((d) => d.shape)
    .join(", ");
  const d = DATA_SUBJECTS[head];
  if (d === undefined) return { problem: `is not a subject of the fabric's data streams (${shapes})` };
  if (rest.length < d.min || rest.length > d.max || !rest.every(isToken)) return { problem: `is not ${d.shape} (tokens of lowercase letters, digits, '_' and '-')` };
  return { stream: d.stream };
}
