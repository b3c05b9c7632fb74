/**
 * One Kubernetes API client per region (one kubeconfig context): reads, watches and patches the
 * member CNPG `Cluster` objects and reads monitoring secrets. Every patch is a JSON merge patch
 * (STACK.md: client-node sends json-patch unless told otherwise). Errors carry stable codes and
 * name the region and object.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type KubernetesListObject,
  type KubernetesObject,
  type ObjectCache,
} from "@kubernetes/client-node";
import { CNPG_GROUP, CNPG_PLURAL, CNPG_VERSION, safeParseCluster, type Cluster } from "../cnpg/cluster.js";
import type { MergePatch } from "../cnpg/patches.js";
import { PGFED_FIELD_MANAGER } from "../cnpg/readers.js";
import { errorMessage, errorMessageWithCauses, PgfedError } from "../errors.js";
import type { Logger } from "../log.js";

export interface RegionClientOptions {
  region: string;
  /** kubeconfig file; default: $KUBECONFIG or ~/.kube/config (or in-cluster). */
  kubeconfigPath?: string;
  context?: string;
  log?: Logger;
}

export interface ObjectRef {
  namespace: string;
  name: string;
}

/** Maps a client-node failure to a PgfedError with a stable code. */
export function kubeError(region: string, doing: string, err: unknown): PgfedError {
  if (err instanceof ApiException) {
    const status = err.code;
    const code =
      status === 404 ? "kube.not_found" : status === 409 ? "kube.conflict" : status === 422 ? "kube.invalid" : status === 401 || status === 403 ? "kube.forbidden" : status === 429 ? "kube.throttled" : "kube.api_error";
    const body: unknown = err.body;
    let message = `HTTP ${status}`;
    if (typeof body === "string" && body.length > 0) {
      try {
        const parsed: unknown = JSON.parse(body);
        if (typeof parsed === "object" && parsed !== null && "message" in parsed && typeof parsed.message === "string") message = parsed.message;
      } catch {
        message = body.slice(0, 300);
      }
    } else if (typeof body === "object" && body !== null && "message" in body && typeof body.message === "string") {
      message = body.message;
    }
    return new PgfedError(code, `${doing} in region ${region}: ${message}`, { region, status }, { cause: err });
  }
  return new PgfedError("kube.unreachable", `${doing} in region ${region}: ${errorMessageWithCauses(err)}`, { region }, { cause: err });
}

export class RegionClient {
  readonly region: string;
  readonly kubeConfig: KubeConfig;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly log: Logger | undefined;

  constructor(opts: RegionClientOptions) {
    this.region = opts.region;
    this.log = opts.log;
    // One KubeConfig per context: it is mutable (STACK.md).
    const kc = new KubeConfig();
    if (opts.kubeconfigPath) kc.loadFromFile(opts.kubeconfigPath);
    else kc.loadFromDefault();
    if (opts.context) {
      if (!kc.getContexts().some((c) => c.name === opts.context))
        throw new PgfedError("kube.unknown_context", `region ${opts.region}: context "${opts.context}" is not in the kubeconfig`);
      kc.setCurrentContext(opts.context);
    }
    this.kubeConfig = kc;
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Reads a Cluster; an object that is not a valid CNPG Cluster is an error naming the field. */
  async getCluster(ref: ObjectRef): Promise<Cluster> {
    let raw: unknown;
    try {
      raw = await this.custom.getNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, ...ref });
    } catch (e) {
      throw kubeError(this.region, `reading Cluster ${ref.namespace}/${ref.name}`, e);
    }
    return this.parse(raw, ref);
  }

  /** Applies a JSON merge patch to a Cluster's spec/metadata and returns the result. */
  async patchCluster(ref: ObjectRef, patch: MergePatch, doing = "patching"): Promise<Cluster> {
    let raw: unknown;
    try {
      raw = await this.custom.patchNamespacedCustomObject(
        // pgfed's own field manager: managedFields then tell pgfed's changes from anyone else's (fieldOwner).
        { group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, ...ref, body: patch, fieldManager: PGFED_FIELD_MANAGER },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    } catch (e) {
      throw kubeError(this.region, `${doing} Cluster ${ref.namespace}/${ref.name}`, e);
    }
    this.log?.debug({ region: this.region, ...ref, patch }, "patched Cluster");
    return this.parse(raw, ref);
  }

  /**
   * Deletes a Cluster with foreground propagation: the object stays (with a deletionTimestamp) until
   * Kubernetes has deleted its pods and volumes, so "gone" means the data directory is gone too.
   * `uid` is a precondition: a Cluster recreated meanwhile under the same name is never deleted.
   */
  async deleteCluster(ref: ObjectRef, uid: string, doing = "deleting"): Promise<void> {
    try {
      await this.custom.deleteNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, ...ref, body: { propagationPolicy: "Foreground", preconditions: { uid } } });
    } catch (e) {
      throw kubeError(this.region, `${doing} Cluster ${ref.namespace}/${ref.name}`, e);
    }
    this.log?.info({ region: this.region, ...ref, uid }, "deleted Cluster");
  }

  /** Creates a Cluster from a manifest (metadata.namespace is the ref's); returns the stored object. */
  async createCluster(ref: ObjectRef, manifest: Record<string, unknown>, doing = "creating"): Promise<Cluster> {
    let raw: unknown;
    try {
      raw = await this.custom.createNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, namespace: ref.namespace, body: manifest, fieldManager: PGFED_FIELD_MANAGER });
    } catch (e) {
      throw kubeError(this.region, `${doing} Cluster ${ref.namespace}/${ref.name}`, e);
    }
    this.log?.info({ region: this.region, ...ref }, "created Cluster");
    return this.parse(raw, ref);
  }

  /** Reads one key of a Secret, decoded. */
  async readSecretKey(ref: ObjectRef, key: string): Promise<string> {
    let secret;
    try {
      secret = await this.core.readNamespacedSecret(ref);
    } catch (e) {
      throw kubeError(this.region, `reading Secret ${ref.namespace}/${ref.name}`, e);
    }
    const value = secret.data?.[key];
    if (value === undefined) throw new PgfedError("kube.secret_key_missing", `Secret ${ref.namespace}/${ref.name} in region ${this.region} has no key "${key}"`);
    return Buffer.from(value, "base64").toString("utf8");
  }

  /**
   * Watches the Clusters of one namespace (list + watch, resumed after a dropped stream and
   * restarted with backoff after an error). `onChange` gets a parsed Cluster or, for an object that
   * does not parse, the reason (the member goes to `unknown`, safety rule 6).
   */
  watchClusters(
    namespace: string,
    handlers: {
      onChange: (ref: ObjectRef, result: { ok: true; cluster: Cluster } | { ok: false; reason: string }) => void;
      onDelete?: (ref: ObjectRef) => void;
      onError?: (err: PgfedError) => void;
      onConnect?: () => void;
    },
  ): ClusterWatch {
    const path = `/apis/${CNPG_GROUP}/${CNPG_VERSION}/namespaces/${namespace}/${CNPG_PLURAL}`;
    const list = () =>
      this.custom.listNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, namespace }) as Promise<
        KubernetesListObject<KubernetesObject>
      >;
    const informer = makeInformer<KubernetesObject>(this.kubeConfig, path, list);
    const refOf = (obj: KubernetesObject): ObjectRef => ({ namespace: obj.metadata?.namespace ?? namespace, name: obj.metadata?.name ?? "" });
    const deliver = (obj: KubernetesObject) => {
      const ref = refOf(obj);
      const parsed = safeParseCluster(obj);
      handlers.onChange(ref, parsed.ok ? { ok: true, cluster: parsed.cluster } : { ok: false, reason: parsed.error.message });
    };
    informer.on("add", deliver);
    informer.on("update", deliver);
    informer.on("delete", (obj) => handlers.onDelete?.(refOf(obj)));
    informer.on("connect", () => handlers.onConnect?.());
    return new ClusterWatch(informer, this.region, handlers.onError, this.log);
  }

  private parse(raw: unknown, ref: ObjectRef): Cluster {
    const parsed = safeParseCluster(raw);
    if (!parsed.ok) throw new PgfedError("cnpg.invalid_cluster", `Cluster ${ref.namespace}/${ref.name} in region ${this.region}: ${parsed.error.message}`);
    return parsed.cluster;
  }
}

/** A running informer that restarts itself with backoff after errors until stopped. */
export class ClusterWatch {
  private stopped = false;
  private backoffMs = 250;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>,
    private readonly region: string,
    onError: ((err: PgfedError) => void) | undefined,
    private readonly log: Logger | undefined,
  ) {
    // "connect" fires before the list is even tried, so only a delivered object proves the watch
    // works again: resetting the backoff earlier turned an API outage into a retry every 250 ms.
    const healthy = () => {
      this.backoffMs = 250;
    };
    informer.on("add", healthy);
    informer.on("update", healthy);
    informer.on("error", (err: unknown) => {
      if (this.stopped) return;
      const e = kubeError(region, "watching Clusters", err);
      onError?.(e);
      this.log?.warn({ region, err: e.message, retryInMs: this.backoffMs }, "Cluster watch failed; restarting");
      this.timer = setTimeout(() => {
        if (!this.stopped) this.startInformer();
      }, this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
    });
  }

  start(): void {
    this.startInformer();
  }

  /** The objects the informer currently holds. */
  list(): readonly KubernetesObject[] {
    return this.informer.list();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.informer.stop();
  }

  private startInformer(): void {
    this.informer.start().catch((err: unknown) => {
      // start() rejects when the first list fails; the "error" handler above schedules the retry.
      this.log?.debug({ region: this.region, err: errorMessage(err) }, "Cluster informer start failed");
    });
  }
}
