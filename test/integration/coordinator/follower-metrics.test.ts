/**
 * A coordinator that steps down exports no per-federation gauge: its last pgfed_primaries_writable
 * or pgfed_failover_awaiting_approval would otherwise keep PgfedNoPrimary,
 * PgfedSplitBrainSuspected or PgfedFailoverAwaitingApproval firing from a follower. Real NATS; the
 * lease is taken from the leader by a second lease store whose clock runs an hour ahead (the
 * leader's lease looks expired to it), so the leader's next renewal fails and it steps down.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../../src/api/server.js";
import { parseTokenFile } from "../../../src/api/auth.js";
import { connectBus, leaseKeys, openLeases, type Bus } from "../../../src/bus/index.js";
import { parseConfig } from "../../../src/config.js";
import { startCoordinator, type Coordinator } from "../../../src/coordinator/index.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { waitFor } from "../../../src/lab/proc.js";
import { silentLogger } from "../../../src/log.js";
import { twoMemberConfigDocument } from "../../support/two-member-config.js";

const log = silentLogger();
let dir: string;
let nats: NatsServer;
let bus: Bus;
let thiefBus: Bus;
let coordinator: Coordinator;
let api: ApiServer;
const registry = new Registry();

/** The gauge series of /metrics that carry a federation label, as `name{federation="…"}` (no HELP/TYPE lines). */
async function federationGaugeSeries(): Promise<string[]> {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const gauges = new Set(
    text
      .split("\n")
      .filter((l) => l.startsWith("# TYPE ") && l.endsWith(" gauge"))
      .map((l) => l.split(" ")[2] ?? ""),
  );
  return text.split("\n").filter((l) => !l.startsWith("#") && gauges.has(l.split("{")[0] ?? "") && l.includes('federation="'));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-follower-metrics-"));
  nats = await startNats({ dir });
  bus = await connectBus({ servers: nats.url, name: "follower-metrics", log, metrics: new Registry() });
  thiefBus = await connectBus({ servers: nats.url, name: "follower-metrics-thief", log, metrics: new Registry() });
  const config = parseConfig(twoMemberConfigDocument("orders", nats.url));
  coordinator = await startCoordinator({ config, bus, log, id: "first", leaseTtlMs: 1_500, registry });
  api = await startApiServer({ service: coordinator, listen: "127.0.0.1:0", tokens: parseTokenFile(""), log, metricsRegistry: registry });
});

afterAll(async () => {
  await api?.close();
  await coordinator?.stop();
  await thiefBus?.close();
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("a coordinator that steps down", () => {
  it("removes every per-federation gauge from its /metrics", async () => {
    await coordinator.waitLeader(15_000);
    const leading = await waitFor("the leader's federation gauges", async () => {
      const s = await federationGaugeSeries();
      return s.some((l) => l.startsWith("pgfed_failover_awaiting_approval{")) && s.some((l) => l.startsWith("pgfed_rpo_warn_fraction{")) ? s : undefined;
    }, 10_000, 100);
    expect(leading.length).toBeGreaterThan(0);

    // Another holder takes the lease: to its clock, an hour ahead, the leader's lease has expired.
    const thief = await openLeases(thiefBus, { clock: () => Date.now() + 3_600_000 });
    const taken = await thief.acquire(leaseKeys.coordinator, "coordinator:thief", 3_600_000);
    expect(taken.ok).toBe(true);
    await waitFor("the coordinator to step down", () => !coordinator.isLeader(), 10_000, 50);
    await waitFor("its federation gauges to be gone", async () => ((await federationGaugeSeries()).length === 0 ? true : undefined), 5_000, 50).catch(() => undefined);

    expect(await federationGaugeSeries()).toEqual([]);
    const text = await (await fetch(`${api.url}/metrics`)).text();
    expect(text).toMatch(/^pgfed_coordinator_leader\{coordinator="first"\} 0$/m);
  }, 60_000);
});
