/**
 * The members' Clusters as the agent sees them: one Kubernetes watch per namespace and one read
 * per member each heartbeat (an API that stopped answering is reported as `reachable: false`).
 * Every observation steers the member's primary guard, is judged by the fence sweep (fencing.ts),
 * and is published when it changed, or on a heartbeat.
 */
import { makeMessage, type Observation } from "../bus/index.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { ClusterWatch, ObjectRef } from "../kube/region.js";
import { ensureNotSuperseded, looksSuperseded, type FenceContext } from "./fencing.js";
import { observeCluster, sameObservation, unknownObservation, unreachableObservation } from "./observation.js";
import type { AgentRuntime, MemberRuntime } from "./runtime.js";

export type ObservationTrigger = "change" | "heartbeat";

export class ClusterWatcher {
  private readonly byRef = new Map<string, MemberRuntime>();
  private readonly watches: ClusterWatch[] = [];

  constructor(
    private readonly agent: AgentRuntime,
    private readonly fence: FenceContext,
  ) {
    for (const rt of agent.members) this.byRef.set(refKey(rt.ref), rt);
  }

  /** Watches every namespace that holds a member. */
  start(): void {
    for (const ns of new Set(this.agent.members.map((m) => m.ref.namespace))) this.watchNamespace(ns);
  }

  async stop(): Promise<void> {
    await Promise.all(this.watches.map((w) => w.stop().catch(() => undefined)));
  }

  /** One Cluster read for the heartbeat: a Cluster, an object pgfed does not understand, or no answer. */
  async readMember(rt: MemberRuntime): Promise<void> {
    const { kube, kubeCall, metrics, region } = this.agent;
    let obs: Observation;
    let gone = false;
    const seq = rt.watchSeq;
    try {
      const c = await kubeCall(kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name}`);
      obs = observeCluster(c);
    } catch (e) {
      const code = e instanceof PgfedError ? e.code : "kube.unreachable";
      if (code === "cnpg.invalid_cluster") obs = unknownObservation(errorMessage(e));
      else if (code === "kube.not_found") {
        obs = unknownObservation(`Cluster ${rt.ref.namespace}/${rt.ref.name} does not exist in region ${region}`);
        gone = true;
      } else {
        metrics.kubeErrors.inc({ region, operation: "read" });
        if (rt.observation?.reachable !== false) rt.log.warn({ code }, `cannot read ${rt.who} from the Kubernetes API of ${region}: ${errorMessage(e)}`);
        obs = unreachableObservation(rt.observation, errorMessage(e));
      }
    }
    if (rt.watchSeq !== seq && rt.observation) {
      // A watch event arrived while this read was in flight: it is at least as new as the read,
      // which may describe the object from before the event. Re-publish what the watch said.
      this.offer(rt, rt.observation, "heartbeat");
      return;
    }
    if (rt.observation?.reachable === false && obs.reachable) rt.log.info(`the Kubernetes API of ${region} answers again for ${rt.who}`);
    this.observe(rt, obs, "heartbeat", { gone });
  }

  /** Hands the observation to the member's publisher unless a change event repeats what was offered. */
  offer(rt: MemberRuntime, obs: Observation, trigger: ObservationTrigger): void {
    if (trigger === "change" && sameObservation(obs, rt.offered)) {
      this.agent.metrics.observationsSkipped.inc(rt.labels);
      return;
    }
    rt.offered = obs;
    rt.observations.offer({ obs, trigger });
  }

  /** What the member's observation publisher sends. */
  async publish(rt: MemberRuntime, obs: Observation, trigger: ObservationTrigger): Promise<void> {
    const { bus, epochs, source, metrics } = this.agent;
    const msg = makeMessage("observation", { federation: rt.fed.name, member: rt.cfg.name, epoch: epochs.current(rt.fed.name), source, data: obs, at: new Date(this.agent.now()) });
    await bus.publish(msg);
    metrics.observations.inc({ ...rt.labels, trigger });
  }

  private watchNamespace(namespace: string): void {
    const { kube, metrics, region, log, stopSignal } = this.agent;
    const watch = kube.watchClusters(namespace, {
      onChange: (ref, result) => {
        const rt = this.byRef.get(refKey(ref));
        if (!rt || stopSignal.aborted) return;
        const obs = result.ok ? observeCluster(result.cluster) : unknownObservation(result.reason);
        rt.watchSeq++;
        this.observe(rt, obs, "change");
      },
      onDelete: (ref) => {
        const rt = this.byRef.get(refKey(ref));
        if (!rt || stopSignal.aborted) return;
        rt.watchSeq++;
        this.observe(rt, unknownObservation(`Cluster ${ref.namespace}/${ref.name} was deleted from region ${region}`), "change", { gone: true });
      },
      onError: (err) => {
        metrics.kubeErrors.inc({ region, operation: "watch" });
        log.debug({ err: err.message }, `watching Clusters in ${namespace}: ${err.message}`);
      },
    });
    watch.start();
    this.watches.push(watch);
  }

  /** Records what was seen, steers the primary guard, and publishes when it changed (or on a heartbeat). */
  private observe(rt: MemberRuntime, obs: Observation, trigger: ObservationTrigger, opts: { gone?: boolean } = {}): void {
    rt.observation = obs;
    rt.observedAtMs = this.agent.now();
    // A primary the coordinator's record says is superseded is fenced, not guarded (fencing.ts).
    const superseded = looksSuperseded(this.fence, rt, obs);
    // Only a definite answer steers the lease: unreachable or unreadable keeps what was decided.
    if (opts.gone) rt.guard.setWanted(false);
    else if (obs.reachable && obs.role !== "unknown") rt.guard.setWanted(obs.role === "primary" && !obs.fenced && !superseded);
    if (superseded) void ensureNotSuperseded(this.fence, rt, "observation");
    this.offer(rt, obs, trigger);
  }
}

function refKey(ref: ObjectRef): string {
  return `${ref.namespace}/${ref.name}`;
}
