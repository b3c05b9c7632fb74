/**
 * Two regions of CNPG stand-ins for the lab-cnpg tests: a Kubernetes API stand-in and a CNPG
 * operator per region, and a @kubernetes/client-node client per region for the test itself. Each
 * test file owns one; `stop` stops operators (their Postgres) and API servers and checks that no
 * Postgres process is left behind.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { expect } from "vitest";
import type { Cluster } from "../../../src/cnpg/index.js";
import type { PgInstance } from "../../../src/lab/cnpg/instance.js";
import { startCnpgOperator, type CnpgOperator, type CnpgOperatorOptions } from "../../../src/lab/cnpg/operator.js";
import { ExternalClusterRegistry } from "../../../src/lab/cnpg/registry.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer } from "../../../src/lab/kube-api/index.js";
import type { Logger } from "../../../src/log.js";
import { getCluster as readCluster, waitCluster as awaitCluster, type ClusterRef } from "../../support/cnpg-cluster.js";
import { postgresDescendants } from "../../support/postgres.js";

export const NS = "db";
export const REGIONS = ["eu", "us"] as const;
export type Region = (typeof REGIONS)[number];

const TOKEN = "test-token";
const MERGE = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

type Timing = Partial<Pick<CnpgOperatorOptions, "pollIntervalMs" | "promotionRetryMs" | "demotionRetryMs">>;

export class StandIns {
  dir = "";
  readonly registry = new ExternalClusterRegistry();
  readonly servers = new Map<Region, KubeApiServer>();
  readonly operators = new Map<Region, CnpgOperator>();
  private readonly apis = new Map<Region, CustomObjectsApi>();

  constructor(private readonly opts: { prefix: string; timing: Timing; log: Logger }) {}

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), this.opts.prefix));
    await chmod(this.dir, 0o755); // Postgres runs as the postgres user
    const tokens = { [TOKEN]: { name: "admin", allow: [{ verbs: "*" as const, resources: "*" as const }] } };
    for (const region of REGIONS) this.servers.set(region, await startKubeApi({ region, tokens, namespaces: [NS] }));
    await writeKubeconfig(this.kubeconfig, REGIONS.map((r) => ({ name: r, url: this.servers.get(r)?.url ?? "", token: TOKEN })));
    for (const region of REGIONS) {
      await this.startOperator(region);
      this.apis.set(region, this.kubeConfig(region).makeApiClient(CustomObjectsApi));
    }
  }

  /** Starts (or, after a stop, starts again) the operator of `region` on the same data directory. */
  async startOperator(region: Region): Promise<CnpgOperator> {
    const op = await startCnpgOperator({ region, kube: this.kubeConfig(region), dataDir: join(this.dir, "data"), registry: this.registry, ...this.opts.timing, log: this.opts.log });
    this.operators.set(region, op);
    return op;
  }

  async stop(): Promise<void> {
    for (const o of this.operators.values()) await o.stop().catch(() => o.stop({ kill: true }));
    for (const s of this.servers.values()) await s.stop();
    const left = postgresDescendants();
    await rm(this.dir, { recursive: true, force: true });
    expect(left).toEqual([]);
  }

  api(region: Region): CustomObjectsApi {
    const a = this.apis.get(region);
    if (!a) throw new Error(`no API client for ${region}`);
    return a;
  }

  operator(region: Region): CnpgOperator {
    const o = this.operators.get(region);
    if (!o) throw new Error(`no operator for ${region}`);
    return o;
  }

  instanceOf(region: Region, name: string): PgInstance {
    const i = this.operator(region).instance(NS, name);
    if (!i) throw new Error(`no instance for ${name} in ${region}`);
    return i;
  }

  ref(region: Region, name: string): ClusterRef {
    return { api: this.api(region), namespace: NS, name, region };
  }

  getCluster(region: Region, name: string): Promise<Cluster> {
    return readCluster(this.ref(region, name));
  }

  waitCluster(region: Region, name: string, what: string, ok: (c: Cluster) => boolean, timeoutMs?: number): Promise<Cluster> {
    return awaitCluster(this.ref(region, name), what, ok, timeoutMs);
  }

  async patch(region: Region, name: string, body: object): Promise<void> {
    await this.api(region).patchNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", name, body }, MERGE);
  }

  private get kubeconfig(): string {
    return join(this.dir, "kubeconfig");
  }

  private kubeConfig(region: Region): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfig);
    kc.setCurrentContext(region);
    return kc;
  }
}
