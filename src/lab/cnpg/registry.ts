/**
 * How a replica cluster in one lab region finds its source in another. In real CNPG an
 * `externalClusters` entry carries a host name reachable across regions and an object store path;
 * the lab has neither DNS nor buckets, so the lab's operators share this registry: each operator
 * registers the clusters it runs under their topology name (`spec.replica.self`, which CNPG also
 * uses as the externalClusters entry name), and a replica resolves its source by entry name.
 */
import type { ExternalCluster } from "../../cnpg/index.js";
import type { PgConnectionInfo } from "./instance.js";

export interface ExternalClusterEndpoint {
  region: string;
  namespace: string;
  cluster: string;
  /** The cluster's archive directory (its object store path under its current server name). */
  archiveDir: string;
  /** The directory holding one archive directory per server name (the "bucket"; a rejoin adds one). */
  archiveRoot: string;
  /** Address of its instance; the port stays the same across restarts. */
  connection: PgConnectionInfo;
  /** Its Postgres is up right now (pg_basebackup needs that; streaming just retries). */
  running(): boolean;
}

export class ExternalClusterRegistry {
  private readonly byName = new Map<string, ExternalClusterEndpoint>();

  register(topologyName: string, endpoint: ExternalClusterEndpoint): void {
    this.byName.set(topologyName, endpoint);
  }

  /** Removes the entry only if it is still the one `owner` registered (another region may have taken the name). */
  unregister(topologyName: string, owner: { region: string; namespace: string; cluster: string }): void {
    const e = this.byName.get(topologyName);
    if (e && e.region === owner.region && e.namespace === owner.namespace && e.cluster === owner.cluster) this.byName.delete(topologyName);
  }

  /** The endpoint an externalClusters entry stands for, or undefined when no lab operator runs it. */
  resolve(ext: ExternalCluster): ExternalClusterEndpoint | undefined {
    return this.byName.get(ext.name);
  }
}
