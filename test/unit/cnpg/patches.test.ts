import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  applyMergePatch,
  clearTokenPatch,
  clusterRole,
  demotePatch,
  followPatch,
  fencePatch,
  fencedInstances,
  parseCluster,
  promoteWithTokenPatch,
  promoteWithoutTokenPatch,
  specPromotionToken,
  unfencePatch,
} from "../../../src/cnpg/index.js";
import type { Cluster, MergePatch } from "../../../src/cnpg/index.js";

type Change = { path: string; before?: unknown; after?: unknown };

/** Every leaf that differs between two JSON values, by dotted path; an absent side is left out. */
function diff(before: unknown, after: unknown, path = ""): Change[] {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diff(before[k], after[k], path === "" ? k : `${path}.${k}`));
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const change: Change = { path };
  if (before !== undefined) change.before = before;
  if (after !== undefined) change.after = after;
  return [change];
}

/** Member `name` of the topology {pg-a, pg-b} as the API server holds it, annotations and status included. */
function member(name: "pg-a" | "pg-b", replica: Record<string, unknown>, annotations: Record<string, string> = {}): Record<string, unknown> {
  return {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: {
      name,
      namespace: "db",
      uid: `uid-${name}`,
      resourceVersion: "1001",
      generation: 7,
      labels: { "pgfed.io/federation": "orders" },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}", ...annotations },
    },
    spec: {
      instances: 3,
      replica: { self: name, ...replica },
      externalClusters: [
        { name: "pg-a", connectionParameters: { host: "pg-a-rw.db", dbname: "postgres" }, plugin: { name: "barman-cloud.cloudnative-pg.io" } },
        { name: "pg-b", connectionParameters: { host: "pg-b-rw.db", dbname: "postgres" }, plugin: { name: "barman-cloud.cloudnative-pg.io" } },
      ],
      bootstrap: { pg_basebackup: { source: name === "pg-a" ? "pg-b" : "pg-a" } },
      postgresql: { parameters: { archive_timeout: "5min" } },
      plugins: [{ name: "barman-cloud.cloudnative-pg.io", isWALArchiver: true }],
    },
    status: {
      phase: "Cluster in healthy state",
      currentPrimary: `${name}-1`,
      timelineID: 3,
      conditions: [{ type: "Ready", status: "True", reason: "ClusterIsReady" }],
      writeService: `${name}-rw`,
    },
  };
}

/** Applies the patch, checks the result is still a valid Cluster, and returns what changed. */
function changes(before: Record<string, unknown>, patch: MergePatch): { after: Cluster; changed: Change[] } {
  const frozen = structuredClone(before);
  const after = applyMergePatch(before, patch);
  expect(before).toEqual(frozen); // the target is never modified
  return { after: parseCluster(after), changed: diff(before, after) };
}

describe("demotePatch", () => {
  it("turns primary A into a replica of B and removes a leftover token, changing nothing else", () => {
    const a = member("pg-a", { primary: "pg-a", source: "pg-b", promotionToken: "x" });
    const { after, changed } = changes(a, demotePatch("pg-b"));
    expect(changed).toEqual([
      { path: "spec.replica.primary", before: "pg-a", after: "pg-b" },
      { path: "spec.replica.promotionToken", before: "x" },
    ]);
    expect(clusterRole(after)).toBe("replica");
    expect(after.spec.replica).toEqual({ self: "pg-a", primary: "pg-b", source: "pg-b" });
  });

  it("is a one-field change when there is no token to remove, and a no-op when already applied", () => {
    const a = member("pg-a", { primary: "pg-a", source: "pg-b" });
    expect(changes(a, demotePatch("pg-b")).changed).toEqual([{ path: "spec.replica.primary", before: "pg-a", after: "pg-b" }]);
    const third = member("pg-a", { primary: "pg-a", source: "pg-c" });
    expect(changes(third, demotePatch("pg-b")).changed).toEqual([
      { path: "spec.replica.primary", before: "pg-a", after: "pg-b" },
      { path: "spec.replica.source", before: "pg-c", after: "pg-b" },
    ]);
    const demoted = applyMergePatch(a, demotePatch("pg-b")) as Record<string, unknown>;
    expect(changes(demoted, demotePatch("pg-b")).changed).toEqual([]);
  });

  it("puts the primary change and the token removal in one patch", () => {
    expect(demotePatch("pg-b")).toEqual({ spec: { replica: { primary: "pg-b", source: "pg-b", promotionToken: null } } });
  });

  it("points a replica at the new primary: primary and source in one patch", () => {
    expect(followPatch("pg-c")).toEqual({ spec: { replica: { primary: "pg-c", source: "pg-c" } } });
    expect(() => followPatch("")).toThrow(expect.objectContaining({ code: "cnpg.invalid_patch" }));
  });
});

describe("promoteWithTokenPatch", () => {
  it("sets primary and the token on replica B in the same patch, changing nothing else", () => {
    const b = member("pg-b", { primary: "pg-a", source: "pg-a" });
    const patch = promoteWithTokenPatch("pg-b", "dG9rZW4=");
    expect(patch).toEqual({ spec: { replica: { primary: "pg-b", promotionToken: "dG9rZW4=" } } });
    const { after, changed } = changes(b, patch);
    expect(changed).toEqual([
      { path: "spec.replica.primary", before: "pg-a", after: "pg-b" },
      { path: "spec.replica.promotionToken", after: "dG9rZW4=" },
    ]);
    expect(clusterRole(after)).toBe("primary");
    expect(specPromotionToken(after)).toBe("dG9rZW4=");
  });

  it("refuses an empty token rather than promote unchecked", () => {
    expect(() => promoteWithTokenPatch("pg-b", "")).toThrow(expect.objectContaining({ code: "cnpg.invalid_token" }));
  });
});

describe("promoteWithoutTokenPatch", () => {
  it("promotes replica B at once and drops any stale token, changing nothing else", () => {
    const b = member("pg-b", { primary: "pg-a", source: "pg-a", promotionToken: "stale" });
    const { after, changed } = changes(b, promoteWithoutTokenPatch("pg-b"));
    expect(changed).toEqual([
      { path: "spec.replica.primary", before: "pg-a", after: "pg-b" },
      { path: "spec.replica.promotionToken", before: "stale" },
    ]);
    expect(clusterRole(after)).toBe("primary");
  });

  it("refuses an empty cluster name", () => {
    expect(() => promoteWithoutTokenPatch("")).toThrow(expect.objectContaining({ code: "cnpg.invalid_patch" }));
    expect(() => demotePatch("")).toThrow("newPrimary must be a non-empty cluster name");
  });
});

describe("clearTokenPatch", () => {
  it("removes only the used token from the new primary's spec", () => {
    const b = member("pg-b", { primary: "pg-b", source: "pg-a", promotionToken: "dG9rZW4=" });
    const { after, changed } = changes(b, clearTokenPatch());
    expect(changed).toEqual([{ path: "spec.replica.promotionToken", before: "dG9rZW4=" }]);
    expect(clusterRole(after)).toBe("primary");
  });

  it("changes nothing when there is no token", () => {
    expect(changes(member("pg-b", { primary: "pg-b", source: "pg-a" }), clearTokenPatch()).changed).toEqual([]);
  });
});

describe("fencePatch and unfencePatch", () => {
  it('fences every instance by default with the annotation \'["*"]\', leaving other annotations alone', () => {
    const a = member("pg-a", { primary: "pg-a", source: "pg-b" });
    const { after, changed } = changes(a, fencePatch());
    expect(changed).toEqual([{ path: "metadata.annotations.cnpg.io/fencedInstances", after: '["*"]' }]);
    expect(after.metadata.annotations?.["kubectl.kubernetes.io/last-applied-configuration"]).toBe("{}");
    expect(fencedInstances(after)).toEqual(["*"]);
  });

  it("fences named instances, replacing an earlier list", () => {
    const a = member("pg-a", { primary: "pg-a", source: "pg-b" }, { "cnpg.io/fencedInstances": '["pg-a-2"]' });
    const { after, changed } = changes(a, fencePatch(["pg-a-1", "pg-a-1"]));
    expect(changed).toEqual([{ path: "metadata.annotations.cnpg.io/fencedInstances", before: '["pg-a-2"]', after: '["pg-a-1"]' }]);
    expect(fencedInstances(after)).toEqual(["pg-a-1"]);
  });

  it("creates the annotations map on a cluster that has none", () => {
    const a = member("pg-a", { primary: "pg-a", source: "pg-b" });
    delete (a.metadata as Record<string, unknown>).annotations;
    expect(changes(a, fencePatch()).changed).toEqual([{ path: "metadata.annotations", after: { "cnpg.io/fencedInstances": '["*"]' } }]);
  });

  it("refuses to fence nobody", () => {
    expect(() => fencePatch([])).toThrow(expect.objectContaining({ code: "cnpg.invalid_fencing" }));
    expect(() => fencePatch([""])).toThrow("fencePatch needs instance names");
  });

  it("unfences by removing only the annotation", () => {
    const a = member("pg-a", { primary: "pg-a", source: "pg-b" }, { "cnpg.io/fencedInstances": '["*"]' });
    const { after, changed } = changes(a, unfencePatch());
    expect(changed).toEqual([{ path: "metadata.annotations.cnpg.io/fencedInstances", before: '["*"]' }]);
    expect(fencedInstances(after)).toEqual([]);
    expect(unfencePatch()).toEqual({ metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
  });
});

describe("a planned switchover A → B, patch by patch", () => {
  it("ends with B primary, A following B, and no token left in either spec", () => {
    let a = member("pg-a", { primary: "pg-a", source: "pg-b" });
    let b = member("pg-b", { primary: "pg-a", source: "pg-a" });
    a = applyMergePatch(a, demotePatch("pg-b")) as Record<string, unknown>;
    b = applyMergePatch(b, promoteWithTokenPatch("pg-b", "dG9rZW4=")) as Record<string, unknown>;
    b = applyMergePatch(b, clearTokenPatch()) as Record<string, unknown>;
    const [ca, cb] = [parseCluster(a), parseCluster(b)];
    expect([clusterRole(ca), clusterRole(cb)]).toEqual(["replica", "primary"]);
    expect(ca.spec.replica).toEqual({ self: "pg-a", primary: "pg-b", source: "pg-b" });
    expect(cb.spec.replica).toEqual({ self: "pg-b", primary: "pg-b", source: "pg-a" });
  });
});

describe("applyMergePatch (RFC 7386)", () => {
  // The test cases of RFC 7386, appendix A.
  it.each<[unknown, unknown, unknown]>([
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ])("merges %j with %j into %j", (target, patch, expected) => {
    expect(applyMergePatch(target, patch)).toEqual(expected);
  });

  it("shares no objects with its arguments", () => {
    const target = { a: { b: [1] } };
    const patch = { c: { d: [2] } };
    const result = applyMergePatch(target, patch) as { a: { b: number[] }; c: { d: number[] } };
    result.a.b.push(9);
    result.c.d.push(9);
    expect(target).toEqual({ a: { b: [1] } });
    expect(patch).toEqual({ c: { d: [2] } });
  });

  it("keeps a __proto__ key from parsed JSON as data, never as the prototype", () => {
    const result = applyMergePatch({}, JSON.parse('{"__proto__":{"polluted":true}}')) as Record<string, unknown>;
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(result)).toEqual(["__proto__"]);
  });

  const json = fc.jsonValue();
  test.prop([json, json])("is idempotent: applying the same patch twice changes nothing more", (target, patch) => {
    const once = applyMergePatch(target, patch);
    expect(applyMergePatch(once, patch)).toEqual(once);
  });
});
