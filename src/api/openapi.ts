/**
 * The OpenAPI 3.1 document, generated from the route table and the same zod schemas that validate
 * requests (`io: "input"`) and describe responses (`io: "output"`).
 */
import { z } from "zod";
import { VERSION } from "../version.js";
import type { AnyRoute } from "./routes.js";
import { auditEntry, auditList, evacuationView, federationHistory, federationList, federationOrPlan, federationView, operationView, planView, statusBody } from "./schemas.js";

type Json = Record<string, unknown>;

const NAMED: [string, z.ZodType][] = [
  ["Federation", federationView],
  ["Operation", operationView],
  ["Plan", planView],
  ["AuditEntry", auditEntry],
  ["Status", statusBody],
  ["FederationList", federationList],
  ["AuditList", auditList],
  ["FederationOrPlan", federationOrPlan],
  ["FederationHistory", federationHistory],
  ["Evacuation", evacuationView],
];

function strip(schema: Json): Json {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

export function buildOpenApiDocument(routes: readonly AnyRoute[]): Json {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of NAMED) registry.add(schema, { id });
  const uri = (id: string) => `#/components/schemas/${id}`;
  const components = z.toJSONSchema(registry, { uri, io: "output", target: "draft-2020-12" }) as { schemas: Record<string, Json> };
  const named = new Map(NAMED.map(([id, s]) => [s, id]));

  const responseSchema = (s: z.ZodType): Json => {
    const id = named.get(s);
    if (id) return { $ref: uri(id) };
    // Inline schemas are small and embed no named ones (those are registered above).
    return strip(z.toJSONSchema(s, { io: "output", target: "draft-2020-12", unrepresentable: "any" }));
  };
  const inputSchema = (s: z.ZodType): Json => strip(z.toJSONSchema(s, { io: "input", target: "draft-2020-12", unrepresentable: "any" }));

  const parameters = (s: z.ZodType | undefined, location: "path" | "query"): Json[] => {
    if (!s) return [];
    const js = inputSchema(s) as { properties?: Record<string, Json>; required?: string[] };
    return Object.entries(js.properties ?? {}).map(([name, schema]) => {
      const { description, ...rest } = schema;
      return {
        name,
        in: location,
        required: location === "path" || (js.required ?? []).includes(name),
        ...(typeof description === "string" ? { description } : {}),
        schema: rest,
      };
    });
  };

  const paths: Record<string, Record<string, Json>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:(\w+)/g, "{$1}");
    const responses: Record<string, Json> = {};
    for (const [code, doc] of Object.entries(r.responses)) {
      responses[code] = {
        description: doc.description,
        ...(doc.schema ? { content: { [doc.contentType ?? "application/json"]: { schema: responseSchema(doc.schema) } } } : {}),
      };
    }
    const op: Json = {
      operationId: r.operationId,
      summary: r.summary,
      tags: [r.path.startsWith("/v1/") ? "v1" : "service"],
      security: r.access === "public" ? [] : [{ bearer: [] }],
      parameters: [
        ...parameters(r.params, "path"),
        ...parameters(r.query, "query"),
        ...(r.method === "POST"
          ? [{ name: "Idempotency-Key", in: "header", required: false, description: "A repeated key returns the same operation instead of starting another.", schema: { type: "string", maxLength: 200 } }]
          : []),
      ],
      ...(r.body ? { requestBody: { required: false, content: { "application/json": { schema: inputSchema(r.body) } } } } : {}),
      responses,
      "x-pgfed-role": r.access,
    };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  paths["/openapi.json"] = {
    get: {
      operationId: "openapi",
      summary: "This document. No authentication.",
      security: [],
      responses: { 200: { description: "The OpenAPI 3.1 document.", content: { "application/json": { schema: { type: "object" } } } } },
    },
  };

  return {
    openapi: "3.1.0",
    info: {
      title: "pgfed promotion API",
      version: VERSION,
      description:
        "Planned switchover, RPO-gated failover, rejoin, dry-run plans and the audit trail of pgfed federations. Errors answer a Status body `{kind, code, reason, message, field?}`. See docs/api.md.",
    },
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(components.schemas).map(([k, v]) => [k, strip(v)])),
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "A token from the API's token file (docs/api.md)." } },
    },
    security: [{ bearer: [] }],
  };
}
