/**
 * What the parts of the agent share: the agent-wide runtime agent.ts builds once and hands to
 * each part (command-handler.ts, cluster-watch.ts), and the runtime of one member.
 */
import type { Bus, BusSubscription, LagSample, Observation } from "../bus/index.js";
import type { MemberConfig } from "../config.js";
import type { ObjectRef, RegionClient } from "../kube/region.js";
import type { Logger } from "../log.js";
import type { MemberSampler } from "../wal/sampler.js";
import type { CommandAuthenticator } from "./command-auth.js";
import type { EpochTracker } from "./epochs.js";
import type { SweepOutcome } from "./fencing.js";
import type { LatestPublisher } from "./latest-publisher.js";
import type { AgentMetrics } from "./metrics.js";
import type { PrimaryGuard } from "./primary-guard.js";
import type { WriteLock } from "./write-lock.js";

/** The federation settings an agent needs (from FederationConfig). */
export interface AgentFederation {
  name: string;
  leaseTtlMs: number;
  clockSkewMarginMs: number;
  sampleIntervalMs: number;
  /**
   * Member name → its topology name (`spec.replica.self`, the `externalClusters` entry other
   * members name in `spec.replica.primary`). Default: the member name itself.
   */
  topologyNames?: Readonly<Record<string, string>>;
}

export interface AgentRuntime {
  readonly agentId: string;
  readonly region: string;
  /** `agent:<region>`: the source of every message the agent publishes. */
  readonly source: string;
  readonly startedAtMs: number;
  readonly kube: RegionClient;
  readonly bus: Bus;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly epochs: EpochTracker;
  /** Checks each command's proof of sender (command-auth.ts). */
  readonly commandAuth: CommandAuthenticator;
  readonly members: readonly MemberRuntime[];
  /** Aborted by stop(). */
  readonly stopSignal: AbortSignal;
  /** Background loops stop() waits for. */
  readonly loops: Promise<void>[];
  /** Clock for deadlines, message times and samples. */
  readonly now: () => number;
  /** Bounds one Kubernetes API call by the kube timeout. */
  readonly kubeCall: <T>(p: Promise<T>, doing: string) => Promise<T>;
  /** Bounds one call (Kubernetes API, KV) by the kube timeout; `code` names what did not answer. */
  readonly bounded: <T>(p: Promise<T>, doing: string, code: string) => Promise<T>;
  /** Counts a publish that failed and says it is sent again on the next pass. */
  readonly publishFailed: (type: string, what: string, e: unknown) => void;
}

export interface LagStatus {
  ok: boolean;
  sampledAtMs: number;
  error?: string;
}

export interface LastCommand {
  id: string;
  kind: string;
  ok: boolean;
  sentence: string;
  atMs: number;
}

export interface MemberRuntime {
  fed: AgentFederation;
  cfg: MemberConfig;
  ref: ObjectRef;
  /** "orders/pg-eu" */
  who: string;
  labels: { region: string; federation: string; member: string };
  /** Binds federation and member. */
  log: Logger;
  observation: Observation | undefined;
  observedAtMs: number | undefined;
  offered: Observation | undefined;
  /** Counts watch deliveries; a heartbeat read overtaken by one is not used. */
  watchSeq: number;
  observations: LatestPublisher<{ obs: Observation; trigger: "change" | "heartbeat" }>;
  lags: LatestPublisher<LagSample>;
  lag: LagStatus | undefined;
  sampler: MemberSampler;
  guard: PrimaryGuard;
  /** Serializes writes to the Cluster (commands, self-fencing, the fence sweep). */
  lock: WriteLock;
  lastCommand: LastCommand | undefined;
  subscription: BusSubscription | undefined;
  /** A fence sweep of this member in flight (one at a time; it re-reads the Cluster). */
  sweeping: Promise<SweepOutcome> | undefined;
}
