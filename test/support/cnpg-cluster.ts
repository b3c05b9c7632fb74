/** CNPG `Cluster` objects in lab regions, read and awaited through @kubernetes/client-node. */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { PHASES, parseCluster, type Cluster } from "../../src/cnpg/index.js";
import { waitFor } from "../../src/lab/proc.js";

export interface ClusterRef {
  api: CustomObjectsApi;
  namespace: string;
  name: string;
  /** Only for messages. */
  region: string;
}

export async function getCluster(ref: ClusterRef): Promise<Cluster> {
  const raw: unknown = await ref.api.getNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: ref.namespace, plural: "clusters", name: ref.name });
  return parseCluster(raw);
}

/** Polls the Cluster until `ok` holds; the error names what was awaited and the last status seen. */
export async function waitCluster(ref: ClusterRef, what: string, ok: (c: Cluster) => boolean, timeoutMs = 60_000): Promise<Cluster> {
  let last: Cluster | undefined;
  try {
    return await waitFor(
      `${ref.name} in ${ref.region}: ${what}`,
      async () => {
        last = await getCluster(ref);
        return ok(last) ? last : undefined;
      },
      timeoutMs,
      25,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(last?.status)}`, { cause: e });
  }
}

export const healthy = (c: Cluster): boolean => c.status?.phase === PHASES.healthy && c.status.readyInstances === 1;

export interface ManifestOptions {
  namespace: string;
  /** Bootstrap with pg_basebackup from `source` instead of initdb. */
  replica: boolean;
  /** Give the external clusters connectionParameters (streaming replication). */
  streaming: boolean;
  /** Archive WAL through the barman-cloud plugin, and restore from the other members' stores. */
  barman: boolean;
  instances: number;
}

/** One member of a distributed topology whose members are `members` (CNPG.md). */
export function clusterManifest(name: string, primary: string, source: string, members: readonly string[], opts: ManifestOptions): object {
  const ns = opts.namespace;
  return {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name, namespace: ns },
    spec: {
      instances: opts.instances,
      postgresql: { parameters: { archive_timeout: "2s" } },
      ...(opts.barman ? { plugins: [{ name: "barman-cloud.cloudnative-pg.io", isWALArchiver: true, parameters: { barmanObjectName: `${name}-store`, serverName: name } }] } : {}),
      bootstrap: opts.replica ? { pg_basebackup: { source } } : { initdb: { database: "app", owner: "app" } },
      replica: { self: name, primary, source },
      externalClusters: members.map((m) => ({
        name: m,
        ...(opts.streaming ? { connectionParameters: { host: `${m}-rw.${ns}.svc`, user: "streaming_replica", dbname: "postgres", sslmode: "disable" } } : {}),
        ...(opts.barman ? { plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: `${m}-store`, serverName: m } } } : {}),
      })),
    },
  };
}
