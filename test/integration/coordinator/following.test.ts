/**
 * A coordinator on a real NATS, fed by a stand-in agent with the traffic the lab showed after
 * switchover pg-eu → pg-ap: pg-eu and pg-us replicate from each other on timeline 1 while pg-ap
 * writes timeline 2. The federation view must say they are not following, with growing lag, and a
 * switchover to pg-eu must be refused at preflight with the numbers (it hung before).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, makeMessage, type Bus, type LagSample, type Observation } from "../../../src/bus/index.js";
import { parseConfig } from "../../../src/config.js";
import { startCoordinator, type Coordinator } from "../../../src/coordinator/index.js";
import type { MemberView } from "../../../src/api/contract.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { waitFor } from "../../../src/lab/proc.js";
import { silentLogger } from "../../../src/log.js";
import { formatLsn } from "../../../src/wal/lsn.js";
import { walFileName } from "../../../src/wal/walfile.js";
import { memberMachine } from "../../../machines/index.js";

const log = silentLogger();
const FED = "demo";
const SEG = 16n * 1024n * 1024n;
const REGIONS = { "pg-eu": "eu-west", "pg-us": "us-east", "pg-ap": "ap-south" } as const;
type Name = keyof typeof REGIONS;

let dir: string;
let nats: NatsServer;
let bus: Bus;
let coordinator: Coordinator;
let feeding = true;
let feeder: Promise<void> | undefined;
/** What the stand-in agent reports for each member; the test changes it. */
const spec: Record<Name, { source?: string; timeline: number }> = { "pg-ap": { timeline: 2 }, "pg-eu": { source: "pg-us", timeline: 1 }, "pg-us": { source: "pg-eu", timeline: 1 } };

function observation(name: Name): Observation {
  const s = spec[name];
  return {
    role: name === "pg-ap" ? "primary" : "replica",
    phase: "Cluster in healthy state",
    fenced: false,
    switchInProgress: false,
    reachable: true,
    ready: true,
    archiving: "ok",
    resourceVersion: "1",
    // CNPG's status.timelineID: stale (1 from before the switchover) on the replica clusters; pgfed must not use it.
    timelineID: name === "pg-ap" ? 2 : 1,
    specPrimary: "pg-ap",
    ...(s.source !== undefined ? { specSource: s.source } : {}),
  };
}

/** pg-ap writes a quarter segment every 250 ms; its archive is one segment behind; the others hold 9/0. */
function lag(name: Name, i: number, atMs: number): LagSample {
  const s = spec[name];
  if (name === "pg-ap") {
    const lsn = 10n * SEG + (BigInt(i) * SEG) / 4n;
    return { role: "primary", currentLsn: formatLsn(lsn), inRecovery: false, timeline: 2, lastArchivedWal: walFileName(2, lsn - SEG), archiveFailedCount: 0, segmentsReady: 0, nextXid: String(1_000 + i), runningXids: 1, sampledAtMs: atMs };
  }
  const pos = s.timeline === 2 ? formatLsn(10n * SEG + (BigInt(i) * SEG) / 4n) : formatLsn(9n * SEG);
  return { role: "replica", receivedLsn: pos, replayedLsn: pos, inRecovery: true, timeline: s.timeline, archiveFailedCount: 0, segmentsReady: 0, sampledAtMs: atMs };
}

async function feed(): Promise<void> {
  for (let i = 0; feeding; i++) {
    const at = new Date();
    for (const name of Object.keys(REGIONS) as Name[]) {
      const source = `agent:${REGIONS[name]}`;
      await bus.publish(makeMessage("observation", { federation: FED, member: name, epoch: 1, source, data: observation(name), at }));
      await bus.publish(makeMessage("lag", { federation: FED, member: name, epoch: 1, source, data: lag(name, i, at.getTime()), at }));
      await bus.publish(makeMessage("heartbeat", { federation: FED, epoch: 1, source, data: { region: REGIONS[name], agentId: `agent-${REGIONS[name]}`, members: [name] }, at }));
    }
    await sleep(250);
  }
}

const memberOf = (name: Name): MemberView | undefined => coordinator.getFederation(FED)?.members.find((m) => m.name === name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-following-"));
  nats = await startNats({ dir });
  bus = await connectBus({ servers: nats.url, name: "following-test", log, metrics: new Registry() });
  const config = parseConfig({
    federations: [
      {
        name: FED,
        failover: { mode: "manual" },
        members: (Object.keys(REGIONS) as Name[]).map((name, i) => ({ name, region: REGIONS[name], namespace: "db", cluster: name, postgres: { host: "127.0.0.1", port: i + 1 } })),
      },
    ],
    regions: Object.values(REGIONS).map((name) => ({ name })),
    bus: { servers: [nats.url] },
  });
  feeder = feed();
  coordinator = await startCoordinator({ config, bus, log, id: "following-test", leaseTtlMs: 1_500 });
  await coordinator.waitLeader(20_000);
}, 60_000);

afterAll(async () => {
  feeding = false;
  await feeder?.catch(() => undefined);
  await coordinator?.stop({ crash: false });
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("replicas that do not follow the primary", () => {
  it("are shown not following with a growing lag and refused as switchover targets", async () => {
    await waitFor("pg-ap designated", async () => coordinator.getFederation(FED)?.designatedPrimary === "pg-ap", 15_000, 100);
    await waitFor("pg-eu judged on its timeline", async () => memberOf("pg-eu")?.following === false && memberOf("pg-eu")?.notFollowing?.startsWith("on timeline") === true, 20_000, 100);
    for (const name of ["pg-eu", "pg-us"] as const) {
      expect(memberOf(name)).toMatchObject({ following: false, notFollowing: "on timeline 1, primary pg-ap on timeline 2", timeline: 1 });
    }
    expect(memberOf("pg-ap")).toMatchObject({ following: true, timeline: 2 });
    const first = memberOf("pg-eu");
    await sleep(2_000);
    const later = memberOf("pg-eu");
    expect(later?.lossIfPromotedSeconds ?? 0).toBeGreaterThan((first?.lossIfPromotedSeconds ?? Infinity) + 1);
    expect(later?.lagBytes ?? 0).toBeGreaterThan(first?.lagBytes ?? Infinity);

    // The dry run says so before anything is tried.
    const plan = await coordinator.switchover(FED, { target: "pg-eu" }, { requestedBy: "test", reason: "dry run" }, { dryRun: true });
    if (plan.kind !== "plan") throw new Error("expected a plan");
    expect(plan.plan.allowed).toBe(false);
    const follows = plan.plan.preconditions.find((p) => p.name === "targetFollowsPrimary");
    expect(follows?.ok).toBe(false);
    expect(follows?.detail).toContain("pg-eu does not follow the primary");

    const res = await coordinator.switchover(FED, { target: "pg-eu" }, { requestedBy: "test", reason: "the lab's second switchover" }, { dryRun: false });
    if (res.kind !== "operation") throw new Error("expected an operation");
    let op = res.operation;
    await waitFor("the switchover to finish", async () => {
      op = coordinator.getOperation(op.id) ?? op;
      return op.finishedAt !== null;
    }, 30_000, 100);
    expect(op.state).toBe("refused");
    expect(op.lastDecision).toMatch(/pg-eu is on timeline 1, the primary pg-ap on timeline 2; it has not received WAL from pg-ap for \d+\.\d s/);
    expect(coordinator.getFederation(FED)?.designatedPrimary).toBe("pg-ap");

    // pg-us reaches timeline 2 but still names pg-eu as its source: not following by its topology.
    spec["pg-us"].timeline = 2;
    await waitFor("pg-us judged by its source", async () => memberOf("pg-us")?.notFollowing?.startsWith("follows") === true, 10_000, 100);
    expect(memberOf("pg-us")).toMatchObject({ following: false, timeline: 2, notFollowing: "follows pg-eu, which is not the primary pg-ap; pg-eu follows pg-us: a cycle that reaches no primary" });
    // Its own WAL keeps up with pg-ap: no archive credit needed, and none given.
    expect(memberOf("pg-us")?.lossIfPromotedSeconds ?? Infinity).toBeLessThan(1);

    // Sources fixed: pg-us follows pg-ap.
    spec["pg-us"].source = "pg-ap";
    await waitFor("pg-us following", async () => memberOf("pg-us")?.following === true, 10_000, 100);
    expect(memberOf("pg-us")?.notFollowing).toBeUndefined();
  }, 90_000);
});

/** Every row description of the member machine, from its state nodes (the table a person reads). */
function memberRowDescriptions(): Set<string> {
  const out = new Set<string>();
  interface Node {
    transitions: Map<string, { description?: string }[]>;
    states: Record<string, Node>;
  }
  const walk = (n: Node): void => {
    for (const rows of n.transitions.values()) for (const r of rows) if (r.description) out.add(r.description);
    for (const child of Object.values(n.states)) walk(child);
  };
  walk(memberMachine.root);
  return out;
}

describe("member transitions", () => {
  it("are logged and audited with their row description and {federation, member, epoch}; rows that change nothing are not", async () => {
    await waitFor("pg-ap designated", async () => coordinator.getFederation(FED)?.designatedPrimary === "pg-ap", 15_000, 100);
    const rows = memberRowDescriptions();
    let entries: Awaited<ReturnType<Coordinator["audit"]>> = [];
    await waitFor("a member transition for each member", async () => {
      entries = (await coordinator.audit(FED, {})).filter((a) => a.action === "member.transition");
      return (Object.keys(REGIONS) as Name[]).every((m) => entries.some((a) => a.member === m));
    }, 15_000, 200);
    for (const a of entries) {
      expect(a.federation).toBe(FED);
      expect(rows.has(a.description), a.description).toBe(true);
      expect(a.epoch).toBeGreaterThanOrEqual(1);
      expect(typeof a.numbers.epoch).toBe("number");
    }
    const ap = entries.filter((a) => a.member === "pg-ap");
    expect(ap[0]?.description).toBe(memberRowFrom("unknown", "primary"));
    // An observation arrives every 250 ms; only changes of state are written.
    await sleep(1_500);
    const later = (await coordinator.audit(FED, {})).filter((a) => a.action === "member.transition" && a.member === "pg-ap");
    expect(later.length).toBe(ap.length);
  }, 40_000);
});

/** The description of the row that takes a member from state `from` to `to`. */
function memberRowFrom(from: string, to: string): string | undefined {
  interface Node {
    key: string;
    transitions: Map<string, { description?: string; target?: { key: string }[] }[]>;
    states: Record<string, Node>;
  }
  const root = memberMachine.root as unknown as Node;
  // The state's own rows first, then the root-level fallbacks every state shares.
  for (const node of [root.states[from], root]) {
    for (const rows of node?.transitions.values() ?? []) for (const r of rows) if (r.target?.some((t) => t.key === to)) return r.description;
  }
  return undefined;
}
