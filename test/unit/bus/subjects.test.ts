import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { checkFilter, checkName, filters, nameProblem, parseSubject, subjectMatches, subjects } from "../../../src/bus/subjects.js";

describe("names", () => {
  it("accepts Kubernetes-style names", () => {
    for (const n of ["orders", "pg-eu", "eu-west-1", "A_b-9"]) expect(checkName("member", n)).toBe(n);
  });

  it.each([
    ["a.b", 'contains "."'],
    ["a*", "wildcard"],
    ["a>", "wildcard"],
    ["a b", "whitespace"],
    ["", "is empty"],
    ["x".repeat(65), "at most 64"],
    ["é", 'contains "é"'],
  ])("refuses %j, saying why", (name, why) => {
    expect(() => checkName("federation", name)).toThrow(why);
    expect(() => checkName("federation", name)).toThrow(/^invalid federation name/);
  });

  it("reserves dlq for the bus", () => {
    expect(() => checkName("federation", "dlq")).toThrow(/reserved/);
    expect(checkName("member", "dlq")).toBe("dlq");
  });

  test.prop([fc.string({ maxLength: 100 })])("a valid name is always exactly one subject token", (s) => {
    if (nameProblem(s) === undefined) {
      expect(s.split(".")).toHaveLength(1);
      expect(s).not.toMatch(/[*>\s]/);
    }
  });
});

describe("subjects", () => {
  it("follows the data-flow diagram", () => {
    expect(subjects.obs("orders", "pg-eu")).toBe("pgfed.orders.obs.pg-eu");
    expect(subjects.lag("orders", "pg-eu")).toBe("pgfed.orders.lag.pg-eu");
    expect(subjects.cmd("orders", "pg-us")).toBe("pgfed.orders.cmd.pg-us");
    expect(subjects.res("orders", "pg-us")).toBe("pgfed.orders.res.pg-us");
    expect(subjects.heartbeat("orders", "eu-west")).toBe("pgfed.orders.hb.eu-west");
    expect(subjects.audit("orders")).toBe("pgfed.orders.audit");
    expect(subjects.deadLetter("invalid_json")).toBe("pgfed.dlq.invalid_json");
  });

  it("refuses to build a subject from a bad name", () => {
    expect(() => subjects.cmd("orders", "pg.eu")).toThrow(/invalid member name "pg.eu"/);
    expect(() => subjects.audit("or ders")).toThrow(/whitespace/);
  });

  it("parses subjects back into their parts", () => {
    expect(parseSubject("pgfed.orders.obs.pg-eu")).toEqual({ kind: "member", federation: "orders", channel: "obs", member: "pg-eu" });
    expect(parseSubject("pgfed.orders.hb.eu-west")).toEqual({ kind: "heartbeat", federation: "orders", region: "eu-west" });
    expect(parseSubject("pgfed.orders.audit")).toEqual({ kind: "audit", federation: "orders" });
    expect(parseSubject("pgfed.dlq.invalid_json")).toEqual({ kind: "deadLetter", reason: "invalid_json" });
    for (const s of ["pgfed.orders.xyz.pg-eu", "other.orders.obs.pg-eu", "pgfed.orders", "pgfed.orders.obs.pg-eu.extra", "pgfed.orders.obs.*"]) expect(parseSubject(s)).toBeUndefined();
  });

  test.prop([fc.string({ maxLength: 60 })])("parseSubject never throws", (s) => {
    parseSubject(s);
  });
});

describe("filters", () => {
  it("builds one-filter subscriptions", () => {
    expect(filters.federation("orders")).toBe("pgfed.orders.>");
    expect(filters.channel("orders", "cmd", "pg-eu")).toBe("pgfed.orders.cmd.pg-eu");
    expect(filters.channel("orders", "hb")).toBe("pgfed.orders.hb.*");
    expect(filters.allAudit()).toBe("pgfed.*.audit");
  });

  it("checks filters", () => {
    expect(checkFilter("pgfed.*.cmd.pg-eu")).toBe("pgfed.*.cmd.pg-eu");
    expect(() => checkFilter("orders.>")).toThrow(/must start with "pgfed\."/);
    expect(() => checkFilter("pgfed.>.obs")).toThrow(/">" may only be the last token/);
    expect(() => checkFilter("pgfed.a b.obs")).toThrow(/token 2 "a b" contains whitespace/);
  });

  it("matches subjects like NATS does", () => {
    expect(subjectMatches("pgfed.orders.>", "pgfed.orders.obs.pg-eu")).toBe(true);
    expect(subjectMatches("pgfed.orders.>", "pgfed.orders")).toBe(false);
    expect(subjectMatches("pgfed.*.audit", "pgfed.orders.audit")).toBe(true);
    expect(subjectMatches("pgfed.*.audit", "pgfed.orders.obs.audit")).toBe(false);
    expect(subjectMatches("*", "orders")).toBe(true);
    expect(subjectMatches("*", "orders.snapshot.m")).toBe(false);
    expect(subjectMatches("*.snapshot.*", "orders.snapshot.m")).toBe(true);
  });
});
