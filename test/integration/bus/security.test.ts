/**
 * The security model against a real nats-server 2.9 configured as the lab configures it
 * (src/lab/bus-security.ts): TLS, one nkey identity per process, per-role permissions
 * (src/bus/permissions.ts), signed commands (src/bus/command-proof.ts).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, nkeyAuthenticator } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectBus,
  createIdentity,
  makeMessage,
  openLeases,
  openStateStore,
  proofVerifies,
  subjects,
  leaseKeys,
  type Bus,
  type BusMessage,
  type MessageOf,
  type Observation,
} from "../../../src/bus/index.js";
import { makeLabBusSecurity, type LabBusSecurity } from "../../../src/lab/bus-security.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { waitFor } from "../../../src/lab/proc.js";
import { silentLogger } from "../../../src/log.js";
import { z } from "zod";

const FED = "demo";
let dir: string;
let nats: NatsServer;
let sec: LabBusSecurity;
let coordinator: Bus;
let agentEu: Bus;
let agentRegistry: Registry;
const log = silentLogger();

const observation: Observation = { role: "replica", phase: "Cluster in healthy state", fenced: false, switchInProgress: false, reachable: true, ready: true, archiving: "ok", resourceVersion: "1" };

function command(member: string, epoch = 2): MessageOf<"command"> {
  return makeMessage("command", {
    federation: FED,
    member,
    epoch,
    source: "coordinator:attacker",
    data: { kind: "promoteWithoutToken", operationId: "op-1", deadlineAt: new Date(Date.now() + 60_000).toISOString() },
  });
}

async function violations(registry: Registry, operation: string): Promise<number> {
  const m = registry.getSingleMetric("pgfed_bus_permission_violations_total");
  const data = await m?.get();
  return (data?.values ?? []).filter((v) => v.labels.operation === operation).reduce((a, v) => a + v.value, 0);
}

/** The newest message stored on `subject`, read as the coordinator. */
async function stored(subject: string): Promise<BusMessage | undefined> {
  return (await coordinator.lastMessage(subject))?.message;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-bus-security-"));
  sec = await makeLabBusSecurity(join(dir, "security"), [
    { region: "eu-west", members: [{ federation: FED, member: "pg-eu" }] },
    { region: "us-east", members: [{ federation: FED, member: "pg-us" }] },
  ]);
  nats = await startNats({ dir: join(dir, "nats"), settings: sec.serverSettings });
  const tls = { caFile: sec.caFile };
  coordinator = await connectBus({ servers: nats.url, name: "coordinator", log, tls, identity: sec.identity(sec.coordinatorFiles[0] as string), metrics: new Registry() });
  await openLeases(coordinator);
  await openStateStore(coordinator, z.unknown());
  agentRegistry = new Registry();
  agentEu = await connectBus({ servers: nats.url, name: "agent-eu", log, tls, identity: sec.identity(sec.agentFiles.get("eu-west") as string), metrics: agentRegistry, manageStream: false, publishTimeoutMs: 1_500, requestTimeoutMs: 1_000 });
}, 60_000);

afterAll(async () => {
  await agentEu?.close();
  await coordinator?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("NATS authentication", () => {
  it("refuses a client without credentials, and one with an nkey the server does not know", async () => {
    await expect(connect({ servers: nats.url, tls: { caFile: sec.caFile }, reconnect: false, timeout: 3_000 })).rejects.toThrow(/Authorization Violation/i);
    const stranger = createIdentity();
    await expect(
      connect({ servers: nats.url, tls: { caFile: sec.caFile }, reconnect: false, timeout: 3_000, authenticator: nkeyAuthenticator(new TextEncoder().encode(stranger.seed)) }),
    ).rejects.toThrow(/Authorization Violation/i);
  });

  it("refuses a client that does not trust the server's certificate (TLS is required)", async () => {
    await expect(connect({ servers: nats.url, reconnect: false, timeout: 3_000, authenticator: nkeyAuthenticator(sec.identity(sec.agentFiles.get("eu-west") as string).seed()) })).rejects.toThrow();
  });
});

describe("an agent's permissions", () => {
  it("publishes its own member's observations, and the coordinator reads them", async () => {
    const msg = makeMessage("observation", { federation: FED, member: "pg-eu", epoch: 1, source: "agent:eu-west", data: observation });
    await agentEu.publish(msg);
    expect((await stored(subjects.obs(FED, "pg-eu")))?.id).toBe(msg.id);
  });

  it("cannot publish a command: the server refuses it, nothing is stored, and the refusal is counted", async () => {
    const before = await violations(agentRegistry, "publish");
    const cmd = command("pg-us");
    await expect(agentEu.publish(cmd)).rejects.toThrow();
    await waitFor("the permission violation to be counted", async () => (await violations(agentRegistry, "publish")) > before, 5_000, 50);
    expect(await stored(subjects.cmd(FED, "pg-us"))).toBeUndefined();
    // Not its own member's either.
    await expect(agentEu.publish(command("pg-eu"))).rejects.toThrow();
    expect(await stored(subjects.cmd(FED, "pg-eu"))).toBeUndefined();
  });

  it("cannot speak for another region's member, nor write audit records of a federation it does not serve", async () => {
    const fake = makeMessage("observation", { federation: FED, member: "pg-us", epoch: 1, source: "agent:eu-west", data: { ...observation, role: "primary" } });
    await expect(agentEu.publish(fake)).rejects.toThrow();
    expect(await stored(subjects.obs(FED, "pg-us"))).toBeUndefined();
    const audit = makeMessage("audit", { federation: "other", epoch: 1, source: "agent:eu-west", data: { actor: "agent:eu-west", action: "x", reason: "", numbers: {}, description: "forged" } });
    await expect(agentEu.publish(audit)).rejects.toThrow();
    expect(await stored(subjects.audit("other"))).toBeUndefined();
    // Its own federation's trail takes the records of fences it applies itself.
    const own = makeMessage("audit", { federation: FED, epoch: 1, source: "agent:eu-west", data: { actor: "agent:eu-west", action: "fence.self", reason: "lease lost", numbers: {}, description: "fenced pg-eu" } });
    await agentEu.publish(own);
    expect((await stored(subjects.audit(FED)))?.id).toBe(own.id);
  });

  it("reads its own member's commands, and cannot open a consumer on another region's commands", async () => {
    const mine = await agentEu.subscribe(subjects.cmd(FED, "pg-eu"), () => undefined, { durable: "agent_eu-west_demo_pg-eu", deliverNew: true });
    await mine.stop();
    await expect(agentEu.subscribe(subjects.cmd(FED, "pg-us"), () => undefined, { durable: "agent_eu-west_demo_pg-us", deliverNew: true })).rejects.toThrow();
    // Nor an ordered (ephemeral) consumer that would read every command.
    await expect(agentEu.subscribe("pgfed.demo.cmd.*", () => undefined, {})).rejects.toThrow();
  });

  it("cannot take the coordinator lease nor rewrite the federation record, but holds its primary lease", async () => {
    const leases = await openLeases(agentEu);
    await expect(leases.acquire(leaseKeys.coordinator, "coordinator:evil", 5_000)).rejects.toThrow();
    expect(await (await openLeases(coordinator)).read(leaseKeys.coordinator)).toBeUndefined();
    const state = await openStateStore(agentEu, z.unknown());
    await expect(state.create(FED, { epoch: 99 })).rejects.toThrow();
    const r = await leases.acquire(leaseKeys.primary(FED), "agent:eu-west", 5_000);
    expect(r.ok).toBe(true);
  });
});

describe("signed commands", () => {
  it("a coordinator's command carries a signature that verifies, and altering any field breaks it", async () => {
    const cmd = command("pg-us");
    await coordinator.publish(cmd);
    const got = await stored(subjects.cmd(FED, "pg-us"));
    if (got?.type !== "command") throw new Error("expected the stored command");
    expect(got.proof?.signer).toBe(coordinator.identity?.publicKey);
    const proof = got.proof as NonNullable<typeof got.proof>;
    expect(proofVerifies(got as unknown as Record<string, unknown>, proof)).toBe(true);
    expect(proofVerifies({ ...got, epoch: got.epoch + 1 }, proof)).toBe(false);
    expect(proofVerifies({ ...got, member: "pg-eu" }, proof)).toBe(false);
    expect(proofVerifies({ ...got, data: { ...got.data, deadlineAt: new Date(Date.now() + 3_600_000).toISOString() } }, proof)).toBe(false);
  });
});
