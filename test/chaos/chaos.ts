/**
 * One chaos run: a seeded sequence of episodes over a World (world.ts) under a constant workload
 * (workload.ts). Each episode is an operation — a switchover to a random member, a failover by
 * losing or partitioning the primary's region — or nothing, with faults at random moments in it;
 * then the run waits for the federation to settle, plays the operator where pgfed asks for one
 * (approve, resolve), repairs (restores regions, rejoins diverged members) and checks the
 * invariants of test/chaos/README in invariants.ts. The seed decides the topology, every choice
 * and every delay; `--seed N` replays a run.
 */
import { chmod } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { AuditEntry, FederationView, OperationView } from "../../src/coordinator/index.js";
import { LAB_FEDERATION, LAB_NAMESPACE } from "../../src/lab/lab.js";
import type { Logger } from "../../src/log.js";
import { query, writable } from "../e2e/fixture.js";
import { descendants, waitFor } from "../../src/lab/proc.js";
import { readFileSync } from "node:fs";
import { EXPOSURE_SLACK_MS, checkAudit, checkLoss, splitBrainMoments, type Violation } from "./invariants.js";
import { Rng } from "./rng.js";
import { LibpqWriter, ROWS, WriteProbe, createTables, presentRows } from "./workload.js";
import { COORDINATORS, World } from "./world.js";

export interface ChaosOptions {
  seed: number;
  dir: string;
  log: Logger;
  /** How many episodes (default 6). */
  episodes?: number;
  /** Stop starting episodes after this long (ms). */
  budgetMs?: number;
  /** Override the topology the seed draws. */
  regions?: 2 | 3;
  streaming?: boolean;
  onLine?: (line: string) => void;
}

export interface EpisodeResult {
  n: number;
  kind: string;
  faults: string[];
  outcome: string;
  operations: { id: string; kind: string; state: string; target: string | null }[];
  lost: number;
  seconds: number;
}

export interface ChaosReport {
  seed: number;
  topology: { regions: number; streaming: boolean };
  faults: Record<string, number>;
  operations: { completed: number; aborted: number; refused: number; awaitingPerson: number };
  rows: { acknowledged: number; lost: number; inDoubt: number; probeWrites: number };
  maxExposureSeconds: number;
  budgetSeconds: number;
  twoWritableMoments: number;
  episodes: EpisodeResult[];
  violations: Violation[];
  durationSeconds: number;
}

/** How long a federation may take to settle after an episode before invariant 4 fails. */
const SETTLE_MS = 120_000;
const OPERATION_MS = 150_000;
/** How long members may take to follow again once their region is back. */
const REPAIR_MS = 90_000;

interface Sample {
  atMs: number;
  f: FederationView;
}

/** Reads the federation every 500 ms: exposure, designation and the operations seen. */
class StatusWatch {
  readonly samples: Sample[] = [];
  readonly operations = new Map<string, OperationView>();
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly world: World) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const f = await this.world.federation().catch(() => undefined);
      if (f) {
        this.samples.push({ atMs: Date.now(), f });
        if (this.samples.length > 20_000) this.samples.splice(0, 10_000);
        if (f.operation) this.operations.set(f.operation.id, f.operation);
      }
      await sleep(500);
    }
  }

  /** The last sample taken before `atMs`. */
  before(atMs: number): Sample | undefined {
    for (let i = this.samples.length - 1; i >= 0; i--) if ((this.samples[i] as Sample).atMs <= atMs) return this.samples[i];
    return undefined;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

type Heal = () => Promise<void>;

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const t0 = Date.now();
  const rng = new Rng(opts.seed);
  const regions = opts.regions ?? (rng.chance(0.6) ? 3 : 2);
  const streaming = opts.streaming ?? rng.chance(0.6);
  const say = (line: string) => opts.onLine?.(`[seed ${opts.seed} +${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
  say(`topology: ${regions} regions, ${streaming ? "streaming" : "archive-only"} replicas`);

  const report: ChaosReport = {
    seed: opts.seed,
    topology: { regions, streaming },
    faults: {},
    operations: { completed: 0, aborted: 0, refused: 0, awaitingPerson: 0 },
    rows: { acknowledged: 0, lost: 0, inDoubt: 0, probeWrites: 0 },
    maxExposureSeconds: 0,
    budgetSeconds: 0,
    twoWritableMoments: 0,
    episodes: [],
    violations: [],
    durationSeconds: 0,
  };

  // Processes that were children of this one before the run (tsx's esbuild service) are not the run's.
  const preexisting = new Set(descendants(process.pid));
  const world = await World.start({ dir: opts.dir, regions, streaming, log: opts.log, onProgress: (l) => say(l) });
  const conn = (member: string) => {
    const r = world.lab.regionOfMember(member);
    const inst = r.operator.instance(LAB_NAMESPACE, r.member.cluster);
    if (!inst) throw new Error(`no instance for ${member}`);
    return inst.connection;
  };
  const portOf = new Map(world.members.map((m) => [conn(m).port, m]));
  const conninfo = () => {
    const ports = world.members.map((m) => conn(m).port);
    return `host=${ports.map(() => "127.0.0.1").join(",")} port=${ports.join(",")} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2`;
  };
  await createTables(conn("pg-eu"));
  // Start once every member has the tables: an early failover would otherwise lose the tables themselves.
  await waitFor("the chaos tables on every member", async () => (await Promise.all(world.members.map((m) => query<{ t: string | null }>(conn(m), `SELECT to_regclass('${ROWS}')::text AS t`).catch(() => [])))).every((r) => r[0]?.t === ROWS), 60_000, 250);
  const writers = [new LibpqWriter("w1", conninfo), new LibpqWriter("w2", conninfo)];
  const probe = new WriteProbe(world.members.map((name) => ({ name, conn: () => conn(name) })));
  const watch = new StatusWatch(world);
  const accounted = new Set<string>();
  const lostRegions = new Set<string>();
  const partitioned = new Set<string>();

  const violate = async (invariant: number, step: string, detail: string) => {
    const audit = await world
      .client()
      .audit(LAB_FEDERATION, { limit: 15 })
      .catch(() => [] as AuditEntry[]);
    const v: Violation = { invariant, step, detail, lastAudit: audit.map((a) => `${a.at} ${a.action} ${a.member ?? ""} ${a.description}`) };
    report.violations.push(v);
    say(`INVARIANT ${invariant} VIOLATED at ${step}: ${detail}`);
  };

  const count = (fault: string) => (report.faults[fault] = (report.faults[fault] ?? 0) + 1);

  /** One fault at a random moment: what it does now, and how it is undone. */
  const injectFault = async (primary: string): Promise<{ name: string; heal: Heal }> => {
    const upRegions = world.regions.filter((r) => !lostRegions.has(r));
    const region = rng.pick(upRegions);
    const kinds = ["kill-leader", "kill-follower", "kill-agent", "nats-restart", "nats-kill", "kube-errors", "kube-latency", "kube-drop-watches", "pg-restart", "archive-unwritable", "bus-latency", "partition-coordinator"] as const;
    const kind = rng.pick(kinds);
    count(kind);
    const downMs = rng.int(1_000, 6_000);
    switch (kind) {
      case "kill-leader":
      case "kill-follower": {
        const leader = await world.leader();
        const victim = kind === "kill-leader" ? leader : COORDINATORS.find((c) => c !== leader && world.running(c));
        if (!victim) return { name: `${kind} (none running)`, heal: async () => undefined };
        await world.killProcess(victim);
        return { name: `${kind} ${victim}`, heal: async () => (await sleep(downMs), world.startProcess(victim)) };
      }
      case "kill-agent": {
        await world.killProcess(`agent-${region}`);
        return { name: `kill-agent ${region}`, heal: async () => (await sleep(downMs), world.startProcess(`agent-${region}`)) };
      }
      case "nats-restart":
        await world.lab.nats.restart();
        return { name: "nats-restart", heal: async () => undefined };
      case "nats-kill":
        await world.lab.nats.kill();
        return { name: `nats-kill ${downMs} ms`, heal: async () => (await sleep(downMs), world.lab.nats.restart()) };
      case "kube-errors":
      case "kube-latency":
      case "kube-drop-watches": {
        const api = world.lab.region(region).kubeApi;
        const faults = kind === "kube-errors" ? { errorRate: rng.int(2, 6) / 10, errorStatus: rng.pick([500, 503, 429] as const) } : kind === "kube-latency" ? { latencyMs: rng.int(200, 900) } : { dropWatches: true };
        await api.faults.set(faults);
        return { name: `${kind} ${region}`, heal: async () => (await sleep(downMs), api.faults.set({ errorRate: undefined, errorStatus: undefined, latencyMs: undefined })) };
      }
      case "pg-restart": {
        const member = rng.pick(world.members.filter((m) => !lostRegions.has(world.regionOf(m))));
        const r = world.lab.regionOfMember(member);
        // A Postgres crash, not a lost node: CNPG's instance manager starts it again.
        await r.operator.killInstance(LAB_NAMESPACE, r.member.cluster, { hold: false });
        return { name: `pg-restart ${member}`, heal: async () => undefined };
      }
      case "archive-unwritable": {
        const dir = world.archiveDir(primary);
        await chmod(dir, 0o555);
        return { name: `archive-unwritable ${primary}`, heal: async () => (await sleep(downMs * 2), chmod(dir, 0o755)) };
      }
      case "bus-latency": {
        const links = world.natsLinks.get(`agent-${region}`) ?? [];
        const ms = rng.int(50, 400);
        for (const l of links) l.setLatency(ms);
        return { name: `bus-latency ${region}`, heal: async () => (await sleep(downMs * 2), links.forEach((l) => l.setLatency(0))) };
      }
      case "partition-coordinator": {
        const leader = (await world.leader()) ?? "c1";
        const links = world.natsLinks.get(leader) ?? [];
        for (const l of links) l.partition();
        return { name: `partition-coordinator ${leader}`, heal: async () => (await sleep(downMs * 2), links.forEach((l) => l.heal())) };
      }
    }
  };

  /** Waits for exactly one writable member that the coordinator designates, no operation running. */
  const settle = async (step: string): Promise<{ primary: string } | { person: OperationView } | undefined> => {
    const deadline = Date.now() + SETTLE_MS;
    let last = "";
    while (Date.now() < deadline) {
      const f = await world.federation().catch((e: unknown) => ((last = String(e)), undefined));
      if (f) {
        const op = f.operation;
        if (op && (op.state === "awaitingApproval" || op.state === "operatorRequired")) {
          // A failover that waits pages someone; a rejoin waiting to discard a member's writes does not need to.
          const alert = op.state === "operatorRequired" ? ["PgfedOperationFailed", "PgfedNoPrimary"] : op.kind === "failover" ? ["PgfedFailoverAwaitingApproval"] : undefined;
          if ((!alert || f.alerts.some((a) => alert.includes(a.name))) && f.lastDecision !== "") return { person: op };
          last = `${op.id} ${op.state} without its alert (alerts: ${f.alerts.map((a) => a.name).join(", ") || "none"})`;
        } else {
          const writable = await writableMembers();
          last = `designated ${f.designatedPrimary ?? "none"}, writable [${writable.join(", ")}], operation ${op ? `${op.kind} ${op.state} at ${op.step}` : "none"}`;
          if (writable.length === 1 && f.designatedPrimary === writable[0] && (!op || op.finishedAt !== null)) return { primary: writable[0] };
        }
      }
      await sleep(500);
    }
    await violate(4, step, `no single writable primary (nor a wait for a person with its alert) ${SETTLE_MS / 1000} s after the episode: ${last}`);
    return undefined;
  };

  const writableMembers = async (): Promise<string[]> => {
    const answers = await Promise.all(world.members.map(async (m) => ((await writable(conn(m))) ? [m] : [])));
    return answers.flat();
  };

  /** Waits for an operation to finish; counts it. */
  const follow = async (id: string): Promise<OperationView | undefined> => {
    const deadline = Date.now() + OPERATION_MS;
    while (Date.now() < deadline) {
      const op = await world
        .client()
        .operation(id)
        .catch(() => undefined);
      if (op) watch.operations.set(op.id, op);
      if (op && (op.finishedAt !== null || op.state === "awaitingApproval" || op.state === "operatorRequired")) return op;
      await sleep(300);
    }
    return undefined;
  };

  /** Plays the person pgfed asks for: approves a failover beyond the budget, resolves operatorRequired. */
  const actAsPerson = async (op: OperationView): Promise<void> => {
    report.operations.awaitingPerson++;
    if (op.state === "awaitingApproval") {
      // The person reads the worst case pgfed shows and accepts that much (a rejoin's approval names no loss).
      const f = await world.federation();
      const accept = op.kind === "failover" ? Math.ceil(f.exposure?.worstCaseSeconds ?? 0) + 1 : undefined;
      say(`approving ${op.id} accepting ${accept} s (${op.lastDecision})`);
      await world
        .client()
        .request("POST", `/v1/operations/${op.id}/approve`, { body: { ...(accept !== undefined ? { acceptDataLoss: accept } : {}), reason: "chaos: the operator accepts the loss shown" } })
        .catch((e: unknown) => say(`approval refused: ${String(e)}`));
    } else {
      const writable = await writableMembers();
      const primary = writable.length === 1 ? writable[0] : (await world.federation()).members.find((m) => m.role === "primary" && !m.fenced && !m.diverged)?.name;
      if (!primary) return;
      say(`resolving ${op.id} with ${primary} (${op.lastDecision})`);
      await world
        .client()
        .request("POST", `/v1/federations/${LAB_FEDERATION}/resolve`, { body: { primary, reason: "chaos: the operator names the one primary" } })
        .catch((e: unknown) => say(`resolve refused: ${String(e)}`));
    }
    await follow(op.id);
  };

  /**
   * Restores lost regions, heals partitions and rejoins what pgfed marked diverged, so the next
   * episode starts whole. Every other member must come back following on its own (a demoted former
   * primary, a replica repointed to the new primary).
   */
  const repair = async (step: string): Promise<void> => {
    for (const r of [...partitioned]) {
      world.healRegion(r);
      partitioned.delete(r);
    }
    for (const r of [...lostRegions]) {
      await world.restoreRegion(r);
      lostRegions.delete(r);
    }
    const rejoined = new Set<string>();
    const deadline = Date.now() + REPAIR_MS;
    let behind: string[] = [];
    while (Date.now() < deadline) {
      const f = await world.federation().catch(() => undefined);
      if (f && (!f.operation || f.operation.finishedAt !== null)) {
        const others = f.members.filter((m) => m.name !== f.designatedPrimary);
        behind = others.filter((m) => !(m.role === "replica" && m.reachable && m.lagSeconds !== null && m.following && !m.fenced && !m.diverged)).map((m) => `${m.name} (${m.diverged ? "diverged" : m.fenced ? "fenced" : (m.notFollowing ?? m.state)}${m.reason ? `: ${m.reason}` : ""})`);
        if (behind.length === 0) return;
        // Diverged members at once; a replica that still does not follow after 30 s (past the new primary's fork point) too.
        const waitedMs = REPAIR_MS - (deadline - Date.now());
        const toRejoin = others.filter((x) => !rejoined.has(x.name) && (x.diverged || (waitedMs > 30_000 && x.role === "replica" && x.reachable && !x.following)));
        for (const m of toRejoin) {
          rejoined.add(m.name);
          say(`rejoining ${m.name} (${m.diverged ? "diverged" : `not following: ${m.notFollowing ?? m.state}`})`);
          const answer = await world
            .client()
            .action(`/v1/federations/${LAB_FEDERATION}/members/${m.name}/rejoin`, { reason: "chaos: repair" }, { dryRun: false })
            .catch((e: unknown) => (say(`rejoin of ${m.name} refused: ${String(e)}`), undefined));
          if (answer?.kind !== "operation") continue;
          let op = await follow(answer.operation.id);
          if (op?.state === "awaitingApproval") {
            // A rejoin discards the member's forked writes: pgfed waits for a person to say so.
            report.operations.awaitingPerson++;
            await world
              .client()
              .request("POST", `/v1/operations/${op.id}/approve`, { body: { reason: "chaos: discard the diverged writes" } })
              .catch((e: unknown) => say(`approval of ${answer.operation.id} refused: ${String(e)}`));
            op = await follow(op.id);
          }
          tally(op);
        }
      }
      await sleep(1_000);
    }
    await violate(4, step, `${REPAIR_MS / 1000} s after the repair, member(s) neither follow the primary nor are marked diverged for a rejoin: ${behind.join(", ")}`);
  };

  const tally = (op: OperationView | undefined) => {
    if (!op) return;
    if (op.state === "completed" || op.state === "resolved") report.operations.completed++;
    else if (op.state === "refused") report.operations.refused++;
    else if (op.state === "aborted" || op.state === "cancelled") report.operations.aborted++;
  };

  const episodes = opts.episodes ?? 6;
  try {
    for (let n = 1; n <= episodes && (!opts.budgetMs || Date.now() - t0 < opts.budgetMs); n++) {
      const e0 = Date.now();
      const before = await world.federation();
      report.budgetSeconds = before.rpo.budgetSeconds;
      const primary = before.designatedPrimary as string;
      const kind = rng.pick(["switchover", "switchover", "lose-region", "partition-region", "faults"] as const);
      const faults: string[] = [];
      const heals: Promise<void>[] = [];
      const opIdsBefore = new Set(watch.operations.keys());
      const personBefore = report.operations.awaitingPerson;
      let faultAtMs: number | undefined;
      let outcome = "";
      say(`episode ${n}: ${kind} (primary ${primary}, epoch ${before.epoch})`);

      const faultLater = async (count: number) => {
        for (let i = 0; i < count; i++) {
          await sleep(rng.int(0, 3_000));
          const f = await injectFault(primary).catch((e: unknown) => ({ name: `fault failed: ${String(e)}`, heal: async () => undefined }));
          faults.push(f.name);
          say(`  fault: ${f.name}`);
          heals.push(f.heal().catch((e: unknown) => say(`  heal of ${f.name} failed: ${String(e)}`)));
        }
      };

      let faulting: Promise<void> = Promise.resolve();
      if (kind === "switchover") {
        const target = rng.pick(world.members.filter((m) => m !== primary));
        faulting = faultLater(rng.chance(0.8) ? rng.int(1, 2) : 0);
        const answer = await world
          .client()
          .action(`/v1/federations/${LAB_FEDERATION}/switchover`, { target, reason: `chaos episode ${n}` }, { dryRun: false })
          .catch((e: unknown) => ((outcome = `refused: ${String(e)}`), undefined));
        if (answer?.kind === "operation") {
          const op = await follow(answer.operation.id);
          outcome = op ? `${op.state}: ${op.lastDecision}` : "did not finish in time";
        } else if (!outcome) outcome = "refused";
        else report.operations.refused++;
      } else if (kind === "lose-region" || kind === "partition-region") {
        const region = world.regionOf(primary);
        faultAtMs = Date.now();
        if (kind === "lose-region") {
          await world.loseRegion(region);
          lostRegions.add(region);
        } else {
          world.partitionRegion(region);
          partitioned.add(region);
        }
        count(kind);
        faulting = faultLater(rng.chance(0.5) ? 1 : 0);
        const promoted = await settleAway(primary);
        outcome = promoted ? `${promoted} promoted` : "no failover";
        if (kind === "partition-region") {
          await sleep(rng.int(0, 5_000));
          world.healRegion(region);
          partitioned.delete(region);
        }
      } else {
        faulting = faultLater(rng.int(1, 3));
        outcome = "faults only";
      }
      await faulting;
      await Promise.all(heals);

      let settled = await settle(`episode ${n} (${kind})`);
      for (let i = 0; settled && "person" in settled && i < 3; i++) {
        await actAsPerson(settled.person);
        settled = await settle(`episode ${n} (${kind}) after the operator acted`);
      }

      // Invariants 1 and 2: which acknowledged rows are gone, and may they be?
      let lostNow = 0;
      if (settled && "primary" in settled) {
        // Only rows acknowledged before the read began: a later one may have committed after its snapshot.
        const readAt = Date.now();
        const present = await presentRows(conn(settled.primary));
        const missing = writers.flatMap((w) => w.acked).filter((r) => r.atMs < readAt && !present.has(`${r.writer}:${r.seq}`) && !accounted.has(`${r.writer}:${r.seq}`));
        lostNow = missing.length;
        for (const r of missing) accounted.add(`${r.writer}:${r.seq}`);
        const newOps = [...watch.operations.values()].filter((o) => !opIdsBefore.has(o.id));
        const failovers = newOps.filter((o) => o.kind === "failover" && (o.state === "completed" || o.state === "resolved"));
        // The fault is the region's loss or cut; a failover some other fault caused started a lease after it.
        const failoverStart = failovers[0] ? Date.parse(failovers[0].startedAt) - (before.failover.leaseTtlSeconds + before.failover.clockSkewMarginSeconds) * 1000 : undefined;
        const faultAt = faultAtMs ?? failoverStart;
        const exposure = faultAt !== undefined ? watch.before(faultAt)?.f.exposure : undefined;
        const approved = newOps.some((o) => o.acceptedLossSeconds !== null || o.state === "resolved") || report.operations.awaitingPerson > personBefore;
        const facts = {
          missing,
          failover: failovers.length > 0 || newOps.some((o) => o.kind === "failover"),
          faultAtMs: faultAt,
          exposureSeconds: exposure?.seconds,
          budgetSeconds: before.rpo.budgetSeconds,
          approved,
          deposedPort: conn(primary).port,
          fenceBoundMs: (before.failover.leaseTtlSeconds + before.failover.clockSkewMarginSeconds) * 1000 + EXPOSURE_SLACK_MS,
          portOf,
        };
        for (const v of checkLoss(facts)) await violate(v.invariant, `episode ${n} (${kind})`, v.detail);
        // Invariant 5: each finished operation explains its steps with numbers.
        for (const op of newOps) {
          const latest = await world.client().operation(op.id).catch(() => op);
          watch.operations.set(latest.id, latest);
          tally(latest);
          if (latest.finishedAt === null) continue;
          // A read can fail while the leadership moves: retry, and never take a failed read for an empty trail.
          let audit: AuditEntry[] | undefined;
          let readError = "";
          for (let attempt = 0; attempt < 5; attempt++) {
            audit = await world
              .client()
              .audit(LAB_FEDERATION, { limit: 10_000, since: new Date(Date.parse(latest.startedAt) - 5_000).toISOString() })
              .catch((e: unknown) => ((readError = String(e)), undefined));
            if (audit?.some((a) => a.operationId === latest.id)) break;
            // Seen once right after NATS was SIGKILLed and restarted: a read without the operation's entries, which the stream holds.
            say(`  audit read ${attempt + 1} of ${latest.id}: ${audit ? `${audit.length} entries, none of it` : `failed: ${readError}`}; reading again`);
            await sleep(1_000);
          }
          const problem = audit ? checkAudit(latest, audit) : `the audit trail of ${latest.id} could not be read: ${readError}`;
          if (problem) await violate(5, `episode ${n} (${kind})`, problem);
        }
        await repair(`episode ${n} (${kind}) repair`);
      }
      // Invariant 3, on everything the probe saw so far.
      const overlaps = splitBrainMoments(probe.writes);
      if (overlaps.length > report.twoWritableMoments) {
        await violate(3, `episode ${n} (${kind})`, `two members accepted writes at the same moment: ${overlaps.slice(report.twoWritableMoments, report.twoWritableMoments + 3).join("; ")}`);
        report.twoWritableMoments = overlaps.length;
      }
      const ep: EpisodeResult = {
        n,
        kind,
        faults,
        outcome,
        operations: [...watch.operations.values()].filter((o) => !opIdsBefore.has(o.id)).map((o) => ({ id: o.id, kind: o.kind, state: o.state, target: o.target })),
        lost: lostNow,
        seconds: Math.round((Date.now() - e0) / 100) / 10,
      };
      report.episodes.push(ep);
      say(`episode ${n} done in ${ep.seconds} s: ${outcome}; ${lostNow} acknowledged row(s) lost; operations ${ep.operations.map((o) => `${o.kind}→${o.target ?? "?"} ${o.state}`).join(", ") || "none"}`);
    }
  } finally {
    await probe.stop();
    for (const w of writers) await w.stop();
    await watch.stop();
    report.rows.acknowledged = writers.reduce((n, w) => n + w.acked.length, 0);
    report.rows.inDoubt = writers.reduce((n, w) => n + w.inDoubt.size, 0);
    report.rows.lost = accounted.size;
    report.rows.probeWrites = probe.writes.filter((w) => w.ok).length;
    report.maxExposureSeconds = Math.max(0, ...watch.samples.map((s) => s.f.exposure?.seconds ?? 0));
    if (report.violations.length > 0) say(`process logs:\n${await world.tails()}`);
    await world.stop();
    // Invariant 6: nothing this run started is left running (pgfed processes, postgres, nats-server, psql).
    const left = [...new Set([...world.livePids(), ...descendants(process.pid).filter((pid) => !preexisting.has(pid))])];
    if (left.length > 0) report.violations.push({ invariant: 6, step: "teardown", detail: `still running: ${left.map((pid) => `${pid} (${commandOf(pid)})`).join(", ")}`, lastAudit: [] });
    report.durationSeconds = Math.round((Date.now() - t0) / 1000);
  }
  return report;

  /** After the primary's region is lost or cut off: the member that became writable and designated, if any. */
  async function settleAway(deposed: string): Promise<string | undefined> {
    const deadline = Date.now() + OPERATION_MS;
    while (Date.now() < deadline) {
      const f = await world.federation().catch(() => undefined);
      if (f?.operation?.kind === "failover" && (f.operation.state === "awaitingApproval" || f.operation.state === "operatorRequired")) return undefined;
      if (f && f.designatedPrimary && f.designatedPrimary !== deposed && (!f.operation || f.operation.finishedAt !== null)) return f.designatedPrimary;
      await sleep(500);
    }
    return undefined;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim().slice(0, 120);
  } catch {
    return "gone";
  }
}
