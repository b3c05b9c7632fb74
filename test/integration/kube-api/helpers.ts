import { connect } from "node:net";
import { ApiException, KubeConfig } from "@kubernetes/client-node";
import type { KubeObject, TokenIdentity } from "../../../src/lab/kube-api/index.js";

export const ADMIN_TOKEN = "admin-token";
export const READER_TOKEN = "reader-token";
export const STATUS_WRITER_TOKEN = "status-writer-token";

export const TOKENS: Record<string, TokenIdentity> = {
  [ADMIN_TOKEN]: { name: "admin", allow: [{ verbs: "*", resources: "*" }] },
  [READER_TOKEN]: { name: "reader", allow: [{ verbs: ["get", "list", "watch"], resources: ["clusters", "secrets"] }] },
  [STATUS_WRITER_TOKEN]: {
    name: "operator",
    allow: [
      { verbs: ["get", "list", "watch"], resources: "*" },
      { verbs: ["update", "patch"], resources: ["clusters/status"] },
    ],
  },
};

/** One KubeConfig per context (it is mutable). */
export function kubeConfigFor(file: string, context: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  kc.setCurrentContext(context);
  return kc;
}

/** A client-node response body: these APIs resolve to `any`, tests narrow to a stored object. */
export function obj(v: unknown): KubeObject {
  if (typeof v !== "object" || v === null || !("metadata" in v)) throw new Error(`not a Kubernetes object: ${JSON.stringify(v)}`);
  return v as KubeObject;
}

export interface Refusal {
  code: number;
  body: Record<string, unknown>;
}

/** Awaits a call that must fail, and returns its HTTP status and parsed Status body. */
export async function refusal(p: Promise<unknown>): Promise<Refusal> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiException) {
      const raw: unknown = e.body;
      let body: unknown = raw;
      if (typeof raw === "string") {
        try {
          body = JSON.parse(raw);
        } catch {
          body = { raw };
        }
      }
      return { code: e.code, body: typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {} };
    }
    throw e;
  }
  throw new Error("the call succeeded but was expected to fail");
}

/** An externalClusters entry CNPG admits: it needs a connection method (here streaming). */
export function external(name: string, namespace: string): Record<string, unknown> {
  return { name, connectionParameters: { host: `${name}-rw.${namespace}.svc`, user: "streaming_replica", dbname: "postgres" } };
}

/** A member of a distributed topology; a replica cluster is bootstrapped with pg_basebackup, as CNPG requires. */
export function cluster(name: string, namespace: string, replica: Record<string, unknown> = { self: name, primary: name, source: "pg-us" }): KubeObject {
  const self = typeof replica.self === "string" && replica.self !== "" ? replica.self : name;
  const isReplica = replica.enabled !== undefined ? replica.enabled === true : replica.primary !== self;
  return {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name, namespace, labels: { app: "pg", tier: name === "pg-eu" ? "gold" : "silver" } },
    spec: {
      instances: 1,
      ...(isReplica && typeof replica.source === "string" ? { bootstrap: { pg_basebackup: { source: replica.source } } } : {}),
      replica,
      externalClusters: [...new Set([name, "pg-eu", "pg-us", "pg-ap"])].map((n) => external(n, namespace)),
    },
  };
}

export function spec(o: KubeObject): Record<string, unknown> {
  return (o.spec ?? {}) as Record<string, unknown>;
}

/** Opens a fresh TCP connection: "connected", or the error code (ECONNREFUSED during a partition). */
export async function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}
