/**
 * Corroboration of a silent primary through its region's Kubernetes API, by the coordinator itself.
 *
 * Why: the primary lease lapses when the agent of the primary's region stops (crash, upgrade),
 * not only when the region is lost. Failing over on lease expiry alone would then promote a
 * replica while the old primary still runs and accepts writes. So before it acts on a silent
 * region, the coordinator reads the primary's Cluster through that region's Kubernetes API:
 *   - it answers and shows the healthy, unfenced primary → the primary lives, only its agent does
 *     not: no failover (alert PgfedAgentDown);
 *   - it answers and the primary is fenced → confirmed fenced (safety rule 3a);
 *   - it answers and the primary is not healthy → the coordinator fences it there itself, reads it
 *     back fenced, and the failover proceeds as "confirmed fenced";
 *   - it does not answer, or the coordinator has no client for the region → a lost region: the
 *     lease (expired plus the clock-skew margin) decides, as before.
 * Probes are bounded (a dead region must not stall the coordinator's loop), at most one request is
 * in flight per federation, and a new one starts at most every `intervalMs`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { PHASES, clusterPhase, clusterRole, fencePatch, isFencedForSure, isReady, type Cluster, type MergePatch } from "../cnpg/index.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { ObjectRef } from "../kube/region.js";
import { orFailAfter } from "../timeout.js";

/** What the coordinator needs of a region's Kubernetes API (a src/kube RegionClient is one). */
export interface RegionClusterAccess {
  getCluster(ref: ObjectRef): Promise<Cluster>;
  patchCluster(ref: ObjectRef, patch: MergePatch, doing?: string): Promise<Cluster>;
}

/** The member the coordinator asks about. */
export interface ProbeTarget {
  member: string;
  region: string;
  ref: ObjectRef;
}

export type KubeVerdict =
  /** The coordinator has no client for the region (no kubeconfig loaded). */
  | { kind: "noClient"; atMs: number }
  /** The region's Kubernetes API did not answer in time, or refused. */
  | { kind: "noAnswer"; atMs: number; error: string }
  /** The Cluster is the unfenced primary cluster, phase healthy and Ready. */
  | { kind: "healthyPrimary"; atMs: number; phase: string }
  /** The Cluster is fenced (all instances). */
  | { kind: "fenced"; atMs: number; phase: string }
  /** The Cluster answers but is not a healthy unfenced primary (Postgres down, demoted, failing over…). */
  | { kind: "notHealthy"; atMs: number; phase: string; why: string };

/** Reads a Cluster the way the decision needs it (pure). An unparseable fencing annotation is "not fenced": fencing again overwrites it. */
export function judgeCluster(c: Cluster, atMs: number): KubeVerdict {
  const phase = clusterPhase(c) ?? "(no phase)";
  if (isFencedForSure(c)) return { kind: "fenced", atMs, phase };
  const role = clusterRole(c);
  const ready = isReady(c);
  if (role === "primary" && phase === PHASES.healthy && ready) return { kind: "healthyPrimary", atMs, phase };
  const why = [role !== "primary" ? "its spec makes it a replica cluster" : "", `phase "${phase}"`, ready ? "" : "not Ready"].filter((s) => s !== "").join(", ");
  return { kind: "notHealthy", atMs, phase, why };
}

/** Words for a verdict, for log lines and audit records. */
export function verdictWords(v: KubeVerdict, region: string): string {
  switch (v.kind) {
    case "noClient":
      return `the coordinator has no Kubernetes client for ${region}`;
    case "noAnswer":
      return `${region}'s Kubernetes API does not answer (${v.error})`;
    case "healthyPrimary":
      return `it is the healthy unfenced primary per ${region}'s Kubernetes API`;
    case "fenced":
      return `it is fenced per ${region}'s Kubernetes API (phase "${v.phase}")`;
    case "notHealthy":
      return `it is not a healthy primary per ${region}'s Kubernetes API (${v.why})`;
  }
}

export interface CorroboratorOptions {
  federation: string;
  /** The coordinator's client for a region, or undefined when it has none. */
  access: (region: string) => RegionClusterAccess | undefined;
  /** Longest wait for one answer (default 2 s). */
  timeoutMs?: number;
  /** Least time between two probes (default 1 s). */
  intervalMs?: number;
  now: () => number;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 2_000;
export const DEFAULT_PROBE_INTERVAL_MS = 1_000;

function bounded<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return orFailAfter(p, timeoutMs, () => new PgfedError("coordinator.kube_timeout", `${what}: no answer within ${timeoutMs} ms`));
}

/** One per federation: probes the designated primary's Cluster through its region's Kubernetes API. */
export class PrimaryCorroborator {
  readonly timeoutMs: number;
  readonly intervalMs: number;
  private inFlight: Promise<void> | undefined;
  private inFlightSinceMs = 0;
  private lastStartMs = -Infinity;
  private last: { member: string; verdict: KubeVerdict } | undefined;

  constructor(private readonly opts: CorroboratorOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.intervalMs = opts.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  }

  hasClient(region: string): boolean {
    return this.opts.access(region) !== undefined;
  }

  /**
   * Non-blocking: the latest verdict about the target, starting a probe when one is due.
   * Undefined while the first answer is pending (for at most `timeoutMs`).
   */
  latest(t: ProbeTarget): KubeVerdict | undefined {
    const nowMs = this.opts.now();
    if (!this.hasClient(t.region)) return { kind: "noClient", atMs: nowMs };
    if (this.inFlight === undefined && nowMs - this.lastStartMs >= this.intervalMs) this.start(t, nowMs);
    // A request still unanswered past the timeout is a region that does not answer (it stays the one in flight).
    if (this.inFlight !== undefined && nowMs - this.inFlightSinceMs >= this.timeoutMs) {
      return { kind: "noAnswer", atMs: nowMs, error: `no answer within ${this.timeoutMs} ms` };
    }
    const last = this.last;
    if (last?.member !== t.member || nowMs - last.verdict.atMs > this.intervalMs + this.timeoutMs) return undefined;
    return last.verdict;
  }

  /** A verdict no older than `intervalMs`, probing (bounded by `timeoutMs`) when there is none. */
  async read(t: ProbeTarget): Promise<KubeVerdict> {
    const nowMs = this.opts.now();
    if (!this.hasClient(t.region)) return { kind: "noClient", atMs: nowMs };
    const last = this.last;
    if (last?.member === t.member && nowMs - last.verdict.atMs < this.intervalMs) return last.verdict;
    if (this.inFlight === undefined && nowMs - this.lastStartMs >= this.intervalMs) this.start(t, nowMs);
    const running = this.inFlight;
    if (running !== undefined) {
      const left = this.timeoutMs - (this.opts.now() - this.inFlightSinceMs);
      if (left > 0) await bounded(running, left, "").catch(() => undefined);
    }
    return this.latest(t) ?? { kind: "noAnswer", atMs: this.opts.now(), error: `no answer within ${this.timeoutMs} ms` };
  }

  /**
   * Ensures the member is fenced (all instances) through its region's Kubernetes API and reads it
   * back fenced. Throws (code coordinator.fence_failed) naming federation, member and region.
   */
  async ensureFenced(t: ProbeTarget, why: string, signal: AbortSignal): Promise<{ patched: boolean; atMs: number }> {
    const who = `${this.opts.federation}/${t.member}`;
    const access = this.opts.access(t.region);
    if (!access) throw new PgfedError("coordinator.fence_failed", `fencing ${who}: the coordinator has no Kubernetes client for ${t.region}`, { federation: this.opts.federation, member: t.member, region: t.region });
    const deadline = this.opts.now() + 3 * this.timeoutMs;
    let patched = false;
    let lastError = "not tried";
    while (this.opts.now() < deadline && !signal.aborted) {
      try {
        const c = await bounded(access.getCluster(t.ref), this.timeoutMs, `reading Cluster ${t.ref.namespace}/${t.ref.name} in ${t.region}`);
        if (judgeCluster(c, this.opts.now()).kind === "fenced") {
          this.last = { member: t.member, verdict: judgeCluster(c, this.opts.now()) };
          return { patched, atMs: this.opts.now() };
        }
        await bounded(access.patchCluster(t.ref, fencePatch(["*"]), `fencing ${who} from the coordinator (${why}):`), this.timeoutMs, `fencing Cluster ${t.ref.namespace}/${t.ref.name} in ${t.region}`);
        patched = true;
        // Loop: the next read must show the fence before it counts.
      } catch (e) {
        lastError = errorMessage(e);
        await sleep(200);
      }
    }
    throw new PgfedError("coordinator.fence_failed", `fencing ${who} through the Kubernetes API of ${t.region}: not read back fenced (${lastError})`, { federation: this.opts.federation, member: t.member, region: t.region });
  }

  private start(t: ProbeTarget, nowMs: number): void {
    const access = this.opts.access(t.region);
    if (!access) return;
    this.lastStartMs = nowMs;
    this.inFlightSinceMs = nowMs;
    this.inFlight = access
      .getCluster(t.ref)
      .then(
        (c) => judgeCluster(c, this.opts.now()),
        (e: unknown): KubeVerdict => ({ kind: "noAnswer", atMs: this.opts.now(), error: errorMessage(e) }),
      )
      .then((verdict) => {
        this.last = { member: t.member, verdict };
      })
      .finally(() => {
        this.inFlight = undefined;
      });
  }
}
