/**
 * What real CNPG clusters do to pgfed beyond the happy path, on three regions:
 *
 * 1. Another writer (a person, Argo CD) changes a member's spec.replica.primary: pgfed notices from
 *    metadata.managedFields, pauses automation, raises PgfedTopologyChangedOutside naming the
 *    field manager, and does not fight the change; an operator puts it back and resumes.
 * 2. The token-loss bug of CNPG before 1.28.4 / 1.29.2 / 1.30.0 (CNPG issue #11074): the demotion
 *    completes with an empty demotion token. pgfed stops the switchover for an operator as soon as
 *    it sees the switch done without a token, instead of waiting out its token timeout; nothing is
 *    promoted, so no member ever accepts writes it should not.
 */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CNPG_GROUP, CNPG_PLURAL, CNPG_VERSION } from "../../src/cnpg/index.js";
import { LAB_NAMESPACE } from "../../src/lab/lab.js";
import { FED, connectionOf, federation, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

let e: E2E;
const who = { requestedBy: "e2e", reason: "cnpg behaviours" };

beforeAll(async () => {
  e = await startE2E("cnpg-behaviours", { regions: 3 });
}, 180_000);

afterAll(async () => {
  await e?.stop();
});

/** Patches a member's Cluster as another tool would: its own field manager, a JSON merge patch. */
async function patchAs(manager: string, member: string, body: object): Promise<void> {
  const r = e.lab.regionOfMember(member);
  const api = r.kubeConfig.makeApiClient(CustomObjectsApi);
  await api.patchNamespacedCustomObject(
    { group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, namespace: LAB_NAMESPACE, name: r.member.cluster, body, fieldManager: manager },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

describe("CNPG behaviours on three regions", () => {
  it("another writer changing spec.replica.primary pauses automation with an alert naming its field manager, and pgfed leaves the change alone", async () => {
    const t0 = Date.now();
    await patchAs("argocd-application-controller", "pg-ap", { spec: { replica: { primary: "pg-us" } } });
    await waitUntil("the federation to pause with the alert", 20_000, () => federation(e).paused && federation(e).alerts.some((a) => a.name === "PgfedTopologyChangedOutside"));
    const noticedMs = Date.now() - t0;
    const alert = federation(e).alerts.find((a) => a.name === "PgfedTopologyChangedOutside");
    expect(alert?.reason).toContain('field manager "argocd-application-controller"');
    expect(alert?.reason).toContain("from pg-eu to pg-us");
    const audit = await e.plane.coordinator.audit(FED, {});
    expect(audit.some((a) => a.action === "topology.changed_outside" && a.member === "pg-ap")).toBe(true);

    // pgfed does not fight it: after more than one repair interval the spec is still as the other writer left it.
    await new Promise((r) => setTimeout(r, 7_000));
    expect((await e.lab.getCluster("pg-ap")).spec.replica?.primary).toBe("pg-us");

    // The operator puts it back and resumes: the alert clears, nothing else changed.
    await patchAs("argocd-application-controller", "pg-ap", { spec: { replica: { primary: "pg-eu" } } });
    await e.plane.coordinator.resume(FED, who, { dryRun: false });
    await waitUntil("automation to resume and the alert to clear", 10_000, () => !federation(e).paused && !federation(e).alerts.some((a) => a.name === "PgfedTopologyChangedOutside"));
    expect(federation(e).designatedPrimary).toBe("pg-eu");
    console.log(`other writer: noticed and paused ${(noticedMs / 1000).toFixed(2)} s after the patch`);
  }, 120_000);

  it("a demotion that completes without a token (CNPG #11074) stops the switchover for an operator at once, nothing promoted", async () => {
    e.lab.injectFault("pg-eu", "tokenLoss");
    const t0 = Date.now();
    const res = await e.plane.coordinator.switchover(FED, { target: "pg-us" }, who, { dryRun: false });
    if (res.kind !== "operation") throw new Error(`expected an operation, got ${JSON.stringify(res)}`);
    await waitUntil("the switchover to stop for an operator", 60_000, () => federation(e).operation?.step === "operatorRequired", 100);
    const stoppedMs = Date.now() - t0;
    const f = federation(e);
    expect(f.operation?.lastDecision ?? f.lastDecision).toMatch(/#11074/);
    const audit = await e.plane.coordinator.audit(FED, {});
    expect(audit.some((a) => a.action === "switchover.token_lost" && a.member === "pg-eu")).toBe(true);
    const eu = await e.lab.getCluster("pg-eu");
    expect(eu.status?.demotionToken ?? "").toBe("");
    expect(eu.status?.switchReplicaClusterStatus?.inProgress).toBe(false);
    // Nothing promoted: no member accepts writes (the old primary is a clean replica).
    for (const m of ["pg-eu", "pg-us", "pg-ap"]) expect(await writable(connectionOf(e.lab, m)), m).toBe(false);
    console.log(`token loss: switchover stopped for an operator ${(stoppedMs / 1000).toFixed(2)} s after the request (token timeout ${e.plane.config.federations[0]?.switchover.tokenTimeout ?? "?"} ms)`);
  }, 120_000);
});
