import { describe, expect, it } from "vitest";
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from "../../../src/lab/kube-api/selectors.js";
import { KubeApiError } from "../../../src/lab/kube-api/status.js";

const match = (sel: string, labels: Record<string, string>) => matchesLabels(parseLabelSelector(sel), labels);

describe("label selectors", () => {
  it("matches equality, inequality, sets and existence as the API server does", () => {
    const l = { app: "pg", tier: "gold", "cnpg.io/cluster": "pg-eu" };
    expect(match("", l)).toBe(true);
    expect(match("app=pg", l)).toBe(true);
    expect(match("app==pg,tier=gold", l)).toBe(true);
    expect(match("app!=pg", l)).toBe(false);
    expect(match("missing!=x", l)).toBe(true);
    expect(match("tier in (gold,silver)", l)).toBe(true);
    expect(match("tier in (silver)", l)).toBe(false);
    expect(match("tier notin (silver)", l)).toBe(true);
    expect(match("missing notin (x)", l)).toBe(true);
    expect(match("cnpg.io/cluster", l)).toBe(true);
    expect(match("!cnpg.io/cluster", l)).toBe(false);
    expect(match("!missing", l)).toBe(true);
    expect(match("app=pg, tier in (gold, silver), !missing", l)).toBe(true);
  });

  it("compares integers with > and <", () => {
    expect(match("n>3", { n: "4" })).toBe(true);
    expect(match("n<3", { n: "4" })).toBe(false);
    expect(match("n>3", {})).toBe(false);
  });

  it("refuses malformed selectors with 400 BadRequest", () => {
    for (const bad of ["tier in (gold", "a=b=c", "a,,b", "-bad=x", "a=b c", "n>x"]) {
      let err: unknown;
      try {
        parseLabelSelector(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(KubeApiError);
      expect((err as KubeApiError).httpStatus).toBe(400);
    }
  });
});

describe("field selectors", () => {
  const o = { apiVersion: "v1", kind: "Event", metadata: { name: "e1", namespace: "db" }, involvedObject: { name: "pg-eu" }, type: "Normal" };

  it("selects on metadata.name, metadata.namespace and the kind's own fields", () => {
    expect(matchesFields(parseFieldSelector("metadata.name=e1,metadata.namespace==db", []), o)).toBe(true);
    expect(matchesFields(parseFieldSelector("metadata.name!=e1", []), o)).toBe(false);
    expect(matchesFields(parseFieldSelector("involvedObject.name=pg-eu,type=Normal", ["involvedObject.name", "type"]), o)).toBe(true);
  });

  it("refuses fields the kind does not index", () => {
    expect(() => parseFieldSelector("spec.instances=1", [])).toThrow("field label not supported: spec.instances");
  });
});
