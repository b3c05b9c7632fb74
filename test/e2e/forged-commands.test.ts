/**
 * Commands that do not come from the leading coordinator, against a lab whose NATS enforces
 * identities and permissions (src/lab/bus-security.ts). The attacker here holds the strongest
 * credential that is not the leader's: the NATS identity of the second, non-leading coordinator,
 * which the server lets publish commands. The agent must still refuse every forged, altered or
 * non-leader command (src/agent/command-auth.ts), dead-letter it, and the leader must audit it and
 * raise PgfedCommandRejected; replayed and stale commands of the real leader change nothing.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, createIdentity, makeMessage, signEnvelope, subjects, type Bus, type DeadLetter, type MessageOf } from "../../src/bus/index.js";
import { FED, startE2E, waitUntil, type E2E } from "./fixture.js";

let e: E2E;
let attacker: Bus;
let leaderKey: Bus;
const deadLetters: DeadLetter[] = [];

function promote(member: string, epoch: number, deadlineMs = 60_000): MessageOf<"command"> {
  return makeMessage("command", {
    federation: FED,
    member,
    epoch,
    source: "coordinator:lab1",
    data: { kind: "promoteWithoutToken", operationId: "forged-op", deadlineAt: new Date(Date.now() + deadlineMs).toISOString() },
  });
}

/** Publishes the envelope as given (no signing by the bus), through the attacker's connection. */
async function publishRaw(msg: Record<string, unknown>): Promise<{ duplicate: boolean }> {
  const pa = await attacker.js.publish(subjects.cmd(FED, String(msg.member)), JSON.stringify(msg), { msgID: String(msg.id) });
  return { duplicate: pa.duplicate };
}

async function rejectedFor(id: string): Promise<DeadLetter> {
  let found: DeadLetter | undefined;
  await waitUntil(`the agent to dead-letter command ${id}`, 10_000, () => {
    found = deadLetters.find((d) => Buffer.from(d.payloadBase64, "base64").toString("utf8").includes(id));
    return found !== undefined;
  });
  return found as DeadLetter;
}

async function expectUnchanged(): Promise<void> {
  const us = await e.lab.getCluster("pg-us");
  expect(us.spec.replica?.primary ?? null).toBe("pg-eu");
  expect(e.plane.coordinator.getFederation(FED)?.designatedPrimary).toBe("pg-eu");
  const writable = e.plane.coordinator.getFederation(FED)?.members.filter((m) => m.role === "primary").map((m) => m.name);
  expect(writable).toEqual(["pg-eu"]);
}

beforeAll(async () => {
  e = await startE2E("forged");
  const second = e.lab.busConnection("coordinator", 2);
  attacker = await connectBus({ servers: second.servers, name: "attacker", log: e.log, tls: second.tls, identity: second.identity });
  const first = e.lab.busConnection("coordinator", 1);
  leaderKey = await connectBus({ servers: first.servers, name: "leader-key", log: e.log, tls: first.tls, identity: first.identity });
  await attacker.subscribeDeadLetters((dl) => void deadLetters.push(dl), { deliverNew: true });
}, 180_000);

afterAll(async () => {
  await attacker?.close();
  await leaderKey?.close();
  await e?.stop();
});

describe("commands without proof of the leading coordinator", () => {
  it("refuses an unsigned command", async () => {
    const cmd = promote("pg-us", 2);
    await publishRaw(cmd);
    const dl = await rejectedFor(cmd.id);
    expect(dl.reason).toBe("unauthenticated");
    expect(dl.refusal).toBe("unsigned");
    expect(dl.error).toMatch(/^unsigned: refusing promoteWithoutToken/);
    await expectUnchanged();
  });

  it("refuses a command signed by a key that is not a coordinator key", async () => {
    const cmd = promote("pg-us", 2);
    const stranger = createIdentity().identity;
    await publishRaw({ ...cmd, proof: signEnvelope(cmd, stranger) });
    expect((await rejectedFor(cmd.id)).error).toMatch(/^untrusted_signer: .*not one of the 2 coordinator key/);
    await expectUnchanged();
  });

  it("refuses a command signed by a coordinator that does not hold the coordinator lease", async () => {
    const cmd = promote("pg-us", 2);
    await attacker.publish(cmd); // the bus signs it with the second coordinator's key
    expect((await rejectedFor(cmd.id)).error).toMatch(/^not_lease_holder: .*held by coordinator:lab1/);
    await expectUnchanged();
  });

  it("refuses a leader-signed command altered after signing", async () => {
    const cmd = promote("pg-us", 0); // signed with a stale epoch, then changed to look current
    const proof = signEnvelope(cmd, e.lab.busConnection("coordinator", 1).identity);
    await publishRaw({ ...cmd, epoch: 2, proof });
    expect((await rejectedFor(cmd.id)).error).toMatch(/^bad_signature: /);
    await expectUnchanged();
  });

  it("audits every rejection in the federation's trail and raises PgfedCommandRejected for the member", async () => {
    await waitUntil("four command.rejected audit records", 10_000, async () => (await e.plane.coordinator.audit(FED, {})).filter((a) => a.action === "command.rejected").length >= 4);
    const records = (await e.plane.coordinator.audit(FED, {})).filter((a) => a.action === "command.rejected");
    expect(records.map((r) => r.member)).toEqual(["pg-us", "pg-us", "pg-us", "pg-us"]);
    expect(records.map((r) => r.numbers.reason).sort()).toEqual(["bad_signature", "not_lease_holder", "unsigned", "untrusted_signer"]);
    const metrics = await e.plane.coordinator.metrics.registry.getSingleMetricAsString("pgfed_commands_rejected_total");
    expect(metrics).toMatch(/pgfed_commands_rejected_total\{federation="demo",member="pg-us",reason="unsigned"\} 1/);
    await waitUntil("PgfedCommandRejected to fire for pg-us", 10_000, () => e.plane.coordinator.alerting.active().some((a) => a.name === "PgfedCommandRejected" && a.labels.member === "pg-us"));
  });
});

describe("the leader's own commands, replayed or stale", () => {
  it("executes a leader-signed command once; a replay with the same id is not stored again", async () => {
    const results: string[] = [];
    const sub = await leaderKey.subscribe(subjects.res(FED, "pg-eu"), (m) => void (m.type === "result" && results.push(m.data.commandId)), { deliverNew: true });
    const cmd = makeMessage("command", { federation: FED, member: "pg-eu", epoch: 1, source: "coordinator:lab1", data: { kind: "walSwitch", operationId: "replay-op", deadlineAt: new Date(Date.now() + 30_000).toISOString() } });
    expect((await leaderKey.publish(cmd)).duplicate).toBe(false);
    await waitUntil("the walSwitch result", 10_000, () => results.includes(cmd.id));
    expect((await leaderKey.publish(cmd)).duplicate).toBe(true);
    await sleep(1_000);
    expect(results.filter((id) => id === cmd.id)).toHaveLength(1);
    await sub.stop();
  });

  it("refuses a leader-signed command past its deadline, and one with a stale epoch", async () => {
    const answers = new Map<string, string>();
    const sub = await leaderKey.subscribe(subjects.res(FED, "pg-us"), (m) => void (m.type === "result" && !m.data.ok && answers.set(m.data.commandId, m.data.error?.code ?? "")), { deliverNew: true });
    const late = promote("pg-us", 2, 300);
    await sleep(600);
    await leaderKey.publish(late);
    const stale = promote("pg-us", 0);
    await leaderKey.publish(stale);
    await waitUntil("both refusals", 10_000, () => answers.size >= 2);
    expect(answers.get(late.id)).toBe("agent.deadline_expired");
    expect(answers.get(stale.id)).toBe("agent.stale_epoch");
    await sub.stop();
    await expectUnchanged();
  });
});
