/**
 * The README tour through the real thing: a 2-region lab (real NATS, real Postgres, Kubernetes
 * API and CNPG stand-ins), its control plane, and the API served over the real coordinator; the
 * CLI drives it in-process exactly as `npx pgfed …` would.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, openStateStore, stateKeys, type Bus } from "../../../src/bus/index.js";
import { federationRecordSchema, type OperationView } from "../../../src/coordinator/index.js";
import { FED, startE2E, type E2E } from "../../e2e/fixture.js";
import { serveLabApi, type LabApi } from "../../support/lab-api.js";

const TOKEN = "tour-operator-token";
let e: E2E;
let lab: LabApi;
let bus: Bus;

beforeAll(async () => {
  e = await startE2E("api-tour");
  lab = await serveLabApi(e, { name: "oncall", role: "operator", token: TOKEN });
  bus = await connectBus({ ...e.lab.busOptions("coordinator", 2), name: "api-tour-probe", log: e.log });
}, 180_000);

afterAll(async () => {
  await bus?.close().catch(() => undefined);
  await lab?.close();
  await e?.stop();
}, 120_000);

const cli = (args: string[]) => lab.cli(args);

async function kvRevision(): Promise<number | undefined> {
  const store = await openStateStore(bus, federationRecordSchema);
  return (await store.get(stateKeys.federation(FED)))?.revision;
}

describe("the README tour over the API", () => {
  it("status shows the federation", async () => {
    const r = await cli(["status", FED]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`federation ${FED}`);
    expect(r.out).toMatch(/pg-eu\s+eu-west\s+primary/);
    expect(r.out).toMatch(/pg-us\s+us-east\s+replica/);
  });

  it("switchover --dry-run prints the plan and changes nothing in the KV store", async () => {
    const before = await kvRevision();
    const r = await cli(["switchover", FED, "--to", "pg-us", "--dry-run"]);
    expect(r.code, `${r.out}${r.err}`).toBe(0);
    expect(r.out).toContain(`plan: switchover ${FED} → pg-us: allowed`);
    expect(r.out).toContain("nothing was changed");
    expect(await kvRevision()).toBe(before);
  });

  it("switchover --wait prints each step and the summary; the operation is the one the API serves", async () => {
    const r = await cli(["switchover", FED, "--to", "pg-us", "--yes", "--wait", "--reason", "README tour", "--timeout", "3m"]);
    expect(r.code, `${r.out}${r.err}`).toBe(0);
    expect(r.out).toContain(`switchover ${FED} → pg-us completed`);
    expect(r.out).toMatch(/epoch (\d+) → (\d+)/);
    const id = /operation (\S+): switchover/.exec(r.out)?.[1] ?? "";
    const res = await fetch(`${lab.api.url}/v1/operations/${encodeURIComponent(id)}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const op = (await res.json()) as OperationView;
    expect(op).toMatchObject({ id, kind: "switchover", state: "completed", target: "pg-us", requestedBy: "oncall", reason: "README tour" });
  });

  it("audit tells the story and runbook renders from the new state", async () => {
    const a = await cli(["audit", FED, "--since", "1h"]);
    expect(a.code, a.err).toBe(0);
    expect(a.out).toContain("oncall");
    expect(a.out).toContain("README tour");
    const rb = await cli(["runbook", FED]);
    expect(rb.code, rb.err).toBe(0);
    expect(rb.out).toContain("Designated primary: `pg-us`");
    expect(rb.out).toContain(`pgfed switchover ${FED} --to pg-eu --dry-run`);
    // the lab's failover timing (leaseTtl 5s, clockSkewMargin 1s) from the API, with no --config
    expect(rb.out).toContain("lease TTL 5.00s + clock-skew margin 1.00s = 6.00s");
  });
});
