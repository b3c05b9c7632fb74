import fc from "fast-check";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, VIEWER_TOKEN, type Harness } from "./helpers.js";

let h: Harness;
beforeAll(async () => {
  // Operations never advance: the fuzz must not depend on timing.
  h = await startHarness({ hang: true });
});
afterAll(async () => {
  await h.close();
});

const POSTS = [
  "/v1/federations/orders/switchover",
  "/v1/federations/orders/failover",
  "/v1/federations/orders/members/pg-us/rejoin",
  "/v1/federations/orders/pause",
  "/v1/federations/orders/resume",
  "/v1/operations/op-1/approve",
  "/v1/federations/orders/approve",
];

describe("bad input changes nothing and answers 4xx naming the field", () => {
  const cases: { name: string; path: string; raw?: string; body?: unknown; headers?: Record<string, string>; status: number; field?: string; message?: RegExp }[] = [
    { name: "malformed JSON", path: POSTS[0] as string, raw: '{"target": "pg-us"', status: 400, field: "body", message: /malformed JSON/ },
    { name: "a JSON array", path: POSTS[0] as string, raw: "[]", status: 400, field: "body" },
    { name: "JSON null", path: POSTS[0] as string, raw: "null", status: 400, field: "body" },
    { name: "a wrong type", path: POSTS[0] as string, body: { target: 42 }, status: 400, field: "body.target", message: /expected string/ },
    { name: "a missing target", path: POSTS[0] as string, body: { reason: "x" }, status: 400, field: "body.target" },
    { name: "an unknown field", path: POSTS[0] as string, body: { target: "pg-us", force: true }, status: 400, field: "body.force", message: /unknown field "force"/ },
    { name: "a __proto__ key", path: POSTS[0] as string, raw: '{"target":"pg-us","__proto__":{"x":1}}', status: 400, field: "body.__proto__" },
    { name: "a bad duration", path: POSTS[1] as string, body: { acceptDataLoss: "lots" }, status: 400, field: "body.acceptDataLoss", message: /invalid duration "lots"/ },
    { name: "a negative duration", path: POSTS[1] as string, body: { acceptDataLoss: -5 }, status: 400, field: "body.acceptDataLoss" },
    { name: "a bad member name", path: "/v1/federations/orders/members/PG_US/rejoin", body: {}, status: 400, field: "member" },
    { name: "an unknown member", path: "/v1/federations/orders/members/pg-zz/rejoin", body: {}, status: 404, field: "member" },
    { name: "an unknown federation", path: "/v1/federations/shipping/pause", body: {}, status: 404, field: "name" },
    { name: "an unknown operation", path: "/v1/operations/op-404/approve", body: {}, status: 404, field: "id" },
    { name: "a bad dryRun", path: `${POSTS[3] as string}?dryRun=yes`, body: {}, status: 400, field: "query.dryRun" },
    { name: "an unknown query parameter", path: `${POSTS[3] as string}?force=1`, body: {}, status: 400, field: "query.force" },
    { name: "a repeated query parameter", path: `${POSTS[3] as string}?dryRun=true&dryRun=false`, body: {}, status: 400, field: "query.dryRun" },
    { name: "a text body", path: POSTS[3] as string, raw: "pause please", headers: { "content-type": "text/plain" }, status: 415, field: "body" },
    { name: "an oversized body", path: POSTS[0] as string, body: { target: "pg-us", reason: "x".repeat(70 * 1024) }, status: 413, field: "body" },
    { name: "a too long reason", path: POSTS[3] as string, body: { reason: "x".repeat(2_000) }, status: 400, field: "body.reason" },
    { name: "a bad Idempotency-Key", path: POSTS[3] as string, body: {}, headers: { "idempotency-key": "a b" }, status: 400, field: "Idempotency-Key" },
  ];

  for (const c of cases) {
    it(`answers ${c.status} to ${c.name}`, async () => {
      const n = h.fake.mutatingCalls().length;
      const r = await h.call("POST", c.path, { ...(c.raw !== undefined ? { raw: c.raw } : { body: c.body }), ...(c.headers ? { headers: c.headers } : {}) });
      expect(r.status, r.text).toBe(c.status);
      expect(r.body).toMatchObject({ kind: "Status", code: c.status });
      if (c.field) expect(r.body.field).toBe(c.field);
      if (c.message) expect(r.body.message).toMatch(c.message);
      if (c.status === 400) expect(String(r.body.message)).toContain(c.field ?? "");
      expect(h.fake.mutatingCalls().length).toBe(n);
    });
  }

  it("answers 404 with a Status body for an unknown route", async () => {
    const r = await h.call("DELETE", "/v1/federations/orders");
    expect(r.status).toBe(404);
    expect(r.body.kind).toBe("Status");
  });

  it("never answers 5xx nor calls a mutation for random bodies", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...POSTS), fc.jsonValue(), fc.boolean(), async (path, body, dryRun) => {
        const before = h.fake.mutatingCalls().length;
        const r = await h.call("POST", `${path}${dryRun ? "?dryRun=true" : ""}`, { body });
        expect(r.status, `${path} ${JSON.stringify(body)} → ${r.text}`).toBeLessThan(500);
        expect(r.body.kind === "Status" || r.status < 300).toBe(true);
        // Input errors stop before the service; 409/422 are the service's own refusals.
        if (r.status >= 400 && r.status !== 409 && r.status !== 422) expect(h.fake.mutatingCalls().length).toBe(before);
      }),
      { numRuns: 150 },
    );
  });

  it("never answers 5xx for random raw text, paths, queries and tokens", async () => {
    const segment = fc.oneof(fc.constantFrom("orders", "pg-us", "op-1", "..", "%00", "%E0%A4%A"), fc.string({ maxLength: 12 }).map(encodeURIComponent));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET", "POST"),
        fc.array(segment, { maxLength: 5 }),
        fc.string({ maxLength: 30 }),
        fc.string({ maxLength: 40 }),
        fc.option(fc.string({ maxLength: 40 }).filter((t) => /^[\x20-\x7e]*$/.test(t)), { nil: null }),
        async (method, segs, query, raw, token) => {
          const path = `/v1/federations/${segs.join("/")}?${encodeURIComponent(query).replace(/%3D/g, "=").replace(/%26/g, "&")}`;
          const before = h.fake.mutatingCalls().length;
          const r = await h.call(method, path, { ...(method === "POST" ? { raw } : {}), token: token ?? VIEWER_TOKEN });
          expect(r.status, `${method} ${path} → ${r.text}`).toBeLessThan(500);
          expect(h.fake.mutatingCalls().length).toBe(before);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("answers every route's bad input with 4xx for a viewer and for nobody", async () => {
    const before = h.fake.mutatingCalls().length;
    for (const path of POSTS) {
      expect((await h.call("POST", path, { token: VIEWER_TOKEN, body: { target: "pg-us" } })).status).toBe(403);
      expect((await h.call("POST", path, { token: null, body: { target: "pg-us" } })).status).toBe(401);
    }
    expect(h.fake.mutatingCalls().length).toBe(before);
  });
});

describe("the OpenAPI document", () => {
  it("is valid OpenAPI 3.1 and lists every registered route", async () => {
    const r = await h.call("GET", "/openapi.json", { token: null });
    expect(r.status).toBe(200);
    const doc = r.body;
    const result = await new Validator().validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    const paths = doc.paths as Record<string, Record<string, unknown>>;
    const documented = Object.entries(paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    expect(documented.sort()).toEqual(h.api.routes().sort());
  });

  it("describes the strict request bodies and the Status error body", async () => {
    const doc = (await h.call("GET", "/openapi.json", { token: null })).body as {
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { additionalProperties?: boolean; required?: string[] } }> } }>>;
      components: { schemas: Record<string, unknown> };
    };
    const body = doc.paths["/v1/federations/{name}/switchover"]?.post?.requestBody?.content["application/json"]?.schema;
    expect(body?.additionalProperties).toBe(false);
    expect(body?.required).toEqual(["target"]);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(["Federation", "Operation", "Plan", "AuditEntry", "Status"]));
  });
});
