import { describe, expect, it } from "vitest";
import { applyJsonPatch, parseJsonPatch, parsePointer, PatchError } from "../../../src/lab/kube-api/json-patch.js";

const apply = (doc: unknown, ops: unknown) => applyJsonPatch(doc, parseJsonPatch(ops));

describe("RFC 6902 JSON patch", () => {
  it("unescapes JSON pointers (~1 is /, ~0 is ~)", () => {
    expect(parsePointer("/metadata/annotations/cnpg.io~1fencedInstances")).toEqual(["metadata", "annotations", "cnpg.io/fencedInstances"]);
    expect(parsePointer("/a~01")).toEqual(["a~1"]);
    expect(parsePointer("")).toEqual([]);
  });

  it("applies the RFC 6902 appendix examples", () => {
    expect(apply({ foo: "bar" }, [{ op: "add", path: "/baz", value: "qux" }])).toEqual({ foo: "bar", baz: "qux" });
    expect(apply({ foo: ["bar", "baz"] }, [{ op: "add", path: "/foo/1", value: "qux" }])).toEqual({ foo: ["bar", "qux", "baz"] });
    expect(apply({ foo: ["bar"] }, [{ op: "add", path: "/foo/-", value: "x" }])).toEqual({ foo: ["bar", "x"] });
    expect(apply({ baz: "qux", foo: "bar" }, [{ op: "remove", path: "/baz" }])).toEqual({ foo: "bar" });
    expect(apply({ baz: "qux", foo: "bar" }, [{ op: "replace", path: "/baz", value: "boo" }])).toEqual({ baz: "boo", foo: "bar" });
    expect(apply({ foo: { bar: "baz", waldo: "fred" }, qux: { corge: "grault" } }, [{ op: "move", from: "/foo/waldo", path: "/qux/thud" }])).toEqual({
      foo: { bar: "baz" },
      qux: { corge: "grault", thud: "fred" },
    });
    expect(apply({ foo: ["all", "grass", "cows", "eat"] }, [{ op: "move", from: "/foo/1", path: "/foo/3" }])).toEqual({ foo: ["all", "cows", "eat", "grass"] });
    expect(apply({ a: { b: 1 } }, [{ op: "copy", from: "/a", path: "/c" }])).toEqual({ a: { b: 1 }, c: { b: 1 } });
    expect(apply({ baz: "qux", foo: ["a", 2, "c"] }, [{ op: "test", path: "/baz", value: "qux" }, { op: "test", path: "/foo/1", value: 2 }])).toEqual({ baz: "qux", foo: ["a", 2, "c"] });
  });

  it("never modifies its input", () => {
    const doc = { a: { b: [1, 2] } };
    apply(doc, [{ op: "add", path: "/a/b/-", value: 3 }, { op: "remove", path: "/a/b/0" }]);
    expect(doc).toEqual({ a: { b: [1, 2] } });
  });

  it("fails a failed test, a missing path and a bad index as 'failed'", () => {
    const failed = (doc: unknown, ops: unknown) => {
      try {
        apply(doc, ops);
      } catch (e) {
        return e instanceof PatchError ? e.kind : "other";
      }
      return "applied";
    };
    expect(failed({ a: 1 }, [{ op: "test", path: "/a", value: 2 }])).toBe("failed");
    expect(failed({ a: 1 }, [{ op: "remove", path: "/b" }])).toBe("failed");
    expect(failed({ a: 1 }, [{ op: "replace", path: "/b", value: 1 }])).toBe("failed");
    expect(failed({ a: [1] }, [{ op: "add", path: "/a/5", value: 1 }])).toBe("failed");
    expect(failed({ a: [1] }, [{ op: "add", path: "/a/01", value: 1 }])).toBe("failed");
    expect(failed({ a: { b: 1 } }, [{ op: "move", from: "/a", path: "/a/b/c" }])).toBe("failed");
    expect(failed({}, [{ op: "add", path: "/x/y", value: 1 }])).toBe("failed");
  });

  it("refuses malformed patch documents as 'malformed'", () => {
    for (const ops of [{ op: "add" }, [{ op: "frobnicate", path: "/a" }], [{ op: "add", path: "/a" }], [{ op: "move", path: "/a" }], [{ op: "add", value: 1 }], ["x"]]) {
      expect(() => parseJsonPatch(ops)).toThrow(PatchError);
    }
    expect(() => apply({}, [{ op: "add", path: "a", value: 1 }])).toThrow(/must be empty or start with/);
  });

  it("keeps a __proto__ member as data", () => {
    const out = apply({}, [{ op: "add", path: "/__proto__", value: { polluted: true } }]) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.hasOwn(out, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
