/**
 * `operatorRequired` has a way out: a coordinator that finds no unfenced primary at start (here the
 * primary was fenced while no coordinator ran, and the federation's record has no snapshot, as for
 * a federation seen for the first time) stops with PgfedNoPrimary. `resolve` is refused while what
 * it names is not the one unfenced primary cluster, changes nothing then, and once the operator has
 * fixed the Cluster it designates the primary (epoch + 1) and automation continues: a planned
 * switchover completes afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, openStateStore, type Bus, type StateStore } from "../../src/bus/index.js";
import { fencePatch, unfencePatch } from "../../src/cnpg/index.js";
import { federationRecordSchema, ServiceError, type FederationRecord } from "../../src/coordinator/index.js";
import { RegionClient } from "../../src/kube/region.js";
import { LAB_NAMESPACE } from "../../src/lab/lab.js";
import { FED, federation, finished, startE2E, waitUntil, type E2E } from "./fixture.js";

let e: E2E;
let bus: Bus;
let store: StateStore<FederationRecord>;
let euKube: RegionClient;
const PG_EU = { namespace: LAB_NAMESPACE, name: "pg-eu" };
const ctx = { requestedBy: "e2e", reason: "pg-eu checked by hand" };

beforeAll(async () => {
  e = await startE2E("resolve");
  bus = await connectBus({ ...e.lab.busOptions("coordinator", 2), name: "e2e-resolve", log: e.log });
  store = await openStateStore(bus, federationRecordSchema, { scope: "*" });
  euKube = new RegionClient({ region: "eu-west", kubeconfigPath: e.lab.kubeconfigPath, context: "eu-west" });
});

afterAll(async () => {
  await bus?.close().catch(() => undefined);
  await e?.stop();
});

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ServiceError) return `${err.kind}: ${err.message}`;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("resolve: the way out of operatorRequired", () => {
  it("a coordinator that finds no unfenced primary at start waits for an operator (PgfedNoPrimary)", async () => {
    const epoch = federation(e).epoch;
    await e.plane.killCoordinator();
    await euKube.patchCluster(PG_EU, fencePatch(["*"]));
    await store.modify(FED, (cur) => (cur ? { ...cur, snapshot: null, operationId: null, step: null } : cur));
    const c = await e.plane.startCoordinator();
    await c.waitLeader(30_000);
    await waitUntil("the federation to load", 20_000, () => c.getFederation(FED) !== undefined, 100);
    const f = federation(e);
    expect(f.designatedPrimary).toBeNull();
    expect(f.epoch).toBe(epoch);
    expect(f.alerts.map((a) => a.name)).toContain("PgfedNoPrimary");
    expect(f.lastDecision).toMatch(/no designated primary; an operator must RESOLVE/);
  });

  it("refuses to name a replica, a fenced primary or a stranger, and changes nothing", async () => {
    const svc = e.plane.coordinator;
    const before = federation(e);
    expect(await refusal(svc.resolve(FED, { primary: "pg-us" }, ctx, { dryRun: false }))).toMatch(/^refused: refusing to resolve demo with pg-us as primary: it is not a primary cluster \(CNPG reports role replica\)/);
    expect(await refusal(svc.resolve(FED, { primary: "pg-eu" }, ctx, { dryRun: false }))).toMatch(/^refused: refusing to resolve demo with pg-eu as primary: it is fenced; unfence it first/);
    expect(await refusal(svc.resolve(FED, { primary: "pg-zz" }, ctx, { dryRun: false }))).toMatch(/not a member of the federation/);
    const plan = await svc.resolve(FED, { primary: "pg-eu" }, ctx, { dryRun: true });
    expect(plan).toMatchObject({ kind: "plan", plan: { kind: "resolve", target: "pg-eu", allowed: false } });
    const after = federation(e);
    expect(after.designatedPrimary).toBeNull();
    expect(after.epoch).toBe(before.epoch);
    expect(after.alerts.map((a) => a.name)).toContain("PgfedNoPrimary");
  });

  it("once the operator unfenced pg-eu, resolve designates it (epoch + 1) and a switchover works again", async () => {
    const svc = e.plane.coordinator;
    const before = federation(e);
    await euKube.patchCluster(PG_EU, unfencePatch());
    await waitUntil("pg-eu observed as an unfenced primary", 20_000, () => federation(e).members.some((m) => m.name === "pg-eu" && m.role === "primary" && !m.fenced && m.reachable), 100);
    expect(await svc.resolve(FED, { primary: "pg-eu" }, ctx, { dryRun: true })).toMatchObject({ kind: "plan", plan: { allowed: true, refusal: null } });
    const t0 = Date.now();
    const done = await svc.resolve(FED, { primary: "pg-eu" }, ctx, { dryRun: false });
    const resolvedMs = Date.now() - t0;
    expect(done).toMatchObject({ kind: "done", federation: { designatedPrimary: "pg-eu", epoch: before.epoch + 1 } });
    const f = federation(e);
    expect(f.alerts.map((a) => a.name)).not.toContain("PgfedNoPrimary");
    expect(f.lastDecision).toContain("e2e resolved demo: pg-eu is the designated primary");
    expect(await refusal(svc.resolve(FED, { primary: "pg-eu" }, ctx, { dryRun: false }))).toMatch(/nothing requires an operator/);
    const stored = await store.get(FED);
    expect(stored?.value).toMatchObject({ designatedPrimary: "pg-eu", epoch: before.epoch + 1 });

    const res = await svc.switchover(FED, { target: "pg-us" }, { requestedBy: "e2e", reason: "after resolve" }, { dryRun: false });
    if (res.kind !== "operation") throw new Error("expected an operation");
    const op = await finished(e, res.operation.id, 60_000);
    expect(op.state, op.lastDecision).toBe("completed");
    expect(federation(e).designatedPrimary).toBe("pg-us");
    console.log(`resolve: refused 3 times with nothing changed; accepted in ${resolvedMs} ms (epoch ${before.epoch} -> ${before.epoch + 1}); switchover afterwards ${op.durationSeconds?.toFixed(2) ?? "?"} s`);
  });
});
