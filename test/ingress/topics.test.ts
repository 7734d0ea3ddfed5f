import { describe, expect, it } from "vitest";
import { filterToSubjects, subjectToTopic, subjectWithin, subjectsIntersect, topicFilterProblem, topicMatches, topicNameProblem, topicToSubject } from "../../ingress/topics.js";

describe("topic ↔ subject mapping", () => {
  it("maps the plain case level for token", () => {
    expect(topicToSubject("telemetry/plant-a/d1/temp")).toBe("telemetry.plant-a.d1.temp");
    expect(subjectToTopic("telemetry.plant-a.d1.temp")).toBe("telemetry/plant-a/d1/temp");
  });

  it("round-trips every topic a device may legally use, with valid NATS tokens", () => {
    const topics = ["a.b/c", "x/ y /z", "a*b/>", "50%/done", "/leading", "trailing/", "a//b", "ünï/çødé", "tab\there", "em\u2003space", "%00", "%2E"];
    for (const t of topics) {
      const s = topicToSubject(t);
      for (const token of s.split(".")) {
        expect(token.length, `${t} -> ${s}`).toBeGreaterThan(0);
        expect(token, `${t} -> ${s}`).not.toMatch(/[\s*>]/);
      }
      expect(subjectToTopic(s)).toBe(t);
    }
  });

  it("maps filters, with a/# also matching a", () => {
    expect(filterToSubjects("a/+/c")).toEqual(["a.*.c"]);
    expect(filterToSubjects("a/#")).toEqual(["a", "a.>"]);
    expect(filterToSubjects("#")).toEqual([">"]);
    expect(filterToSubjects("a.b/#")).toEqual(["a%2Eb", "a%2Eb.>"]);
  });

  it("matches topics like MQTT, with $ topics kept from leading wildcards", () => {
    expect(topicMatches("a/+/c", "a/b/c")).toBe(true);
    expect(topicMatches("a/#", "a")).toBe(true);
    expect(topicMatches("a/#", "a/b/c")).toBe(true);
    expect(topicMatches("+/b", "a/b/c")).toBe(false);
    expect(topicMatches("#", "$SYS/x")).toBe(false);
    expect(topicMatches("+/x", "$SYS/x")).toBe(false);
    expect(topicMatches("$SYS/#", "$SYS/x")).toBe(true);
    expect(topicMatches("a/+", "a/")).toBe(true);
  });

  it("validates names and filters", () => {
    expect(topicNameProblem("a/#")).toMatch(/wildcard/);
    expect(topicNameProblem("")).toMatch(/empty/);
    expect(topicNameProblem("a/b")).toBeUndefined();
    expect(topicFilterProblem("a/#/b")).toMatch(/#/);
    expect(topicFilterProblem("a/b+")).toMatch(/\+/);
    expect(topicFilterProblem("a/+/#")).toBeUndefined();
    // what fits MQTT (64 KiB) but not a NATS protocol line: refused before it reaches NATS
    expect(topicNameProblem(`a/${"x".repeat(1_100)}`)).toMatch(/too long/);
    expect(topicNameProblem(`a/${".".repeat(400)}`)).toMatch(/too long/);
    expect(topicNameProblem(`a/${"x".repeat(1_000)}`)).toBeUndefined();
    expect(topicFilterProblem(`a/${"x".repeat(1_100)}/#`)).toMatch(/too long/);
  });

  it("compares subject patterns for permissions", () => {
    expect(subjectWithin("cmd.s.d.>", "cmd.s.d.>")).toBe(true);
    expect(subjectWithin("cmd.s.d.x", "cmd.s.d.>")).toBe(true);
    expect(subjectWithin("cmd.s.*.x", "cmd.s.d.>")).toBe(false);
    expect(subjectWithin("cmd.>", "cmd.s.d.>")).toBe(false);
    expect(subjectWithin("a.*", "a.*")).toBe(true);
    expect(subjectsIntersect("cmd.*.d.x", "cmd.s.>")).toBe(true);
    expect(subjectsIntersect("cmd.a", "cmd.b")).toBe(false);
  });
});

describe("durable consumer filters", () => {
  it("are made disjoint: nested dropped, intersecting joined", async () => {
    const { disjointFilters } = await import("../../ingress/durable.js");
    expect(disjointFilters(["events.a.>", "events.a.*.c"])).toEqual(["events.a.>"]);
    expect(disjointFilters(["a.*.c", "a.b.*"])).toEqual(["a.*.*"]);
    expect(disjointFilters(["a.b", "a.b", "c.d"]).sort()).toEqual(["a.b", "c.d"]);
    expect(disjointFilters(["a.*.c", "a.b.*", "a.>"])).toEqual(["a.>"]);
    expect(disjointFilters(["cmd.s.d", "cmd.s.d.>"]).sort()).toEqual(["cmd.s.d", "cmd.s.d.>"]);
  });
});
