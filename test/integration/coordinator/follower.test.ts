/**
 * Two coordinators with their APIs on one NATS: the follower knows the leader (from the
 * coordinator lease and the leader's advertised API address), answers /readyz 200 and redirects
 * API calls to the leader with 307; when the leader dies, the follower takes over.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTokenFile, tokenLine } from "../../../src/api/auth.js";
import { startApiServer, type ApiServer } from "../../../src/api/server.js";
import { connectBus, type Bus } from "../../../src/bus/index.js";
import { parseConfig, type Config } from "../../../src/config.js";
import { startCoordinator, type Coordinator } from "../../../src/coordinator/index.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { waitFor } from "../../../src/lab/proc.js";
import { silentLogger } from "../../../src/log.js";
import { twoMemberConfigDocument } from "../../support/two-member-config.js";

const TOKEN = "follower-test-token";
const tokens = parseTokenFile(tokenLine("oncall", "operator", TOKEN));
const log = silentLogger();
let dir: string;
let nats: NatsServer;

interface Node {
  id: string;
  bus: Bus;
  coordinator: Coordinator;
  api: ApiServer;
}
const nodes: Node[] = [];

function config(): Config {
  return parseConfig(twoMemberConfigDocument("follow", nats.url));
}

async function startNode(id: string): Promise<Node> {
  const bus = await connectBus({ servers: nats.url, name: `follower-test-${id}`, log, metrics: new Registry() });
  const coordinator = await startCoordinator({ config: config(), bus, log, id, leaseTtlMs: 1_500 });
  const api = await startApiServer({ service: coordinator, listen: "127.0.0.1:0", tokens, log });
  await coordinator.setApiUrl(api.url);
  const node = { id, bus, coordinator, api };
  nodes.push(node);
  return node;
}

async function stopNode(n: Node, crash = false): Promise<void> {
  nodes.splice(nodes.indexOf(n), 1);
  await n.api.close();
  await n.coordinator.stop({ crash });
  await n.bus.close();
}

const get = (url: string) => fetch(url, { headers: { authorization: `Bearer ${TOKEN}` }, redirect: "manual" });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-follower-"));
  nats = await startNats({ dir });
});

afterAll(async () => {
  for (const n of [...nodes]) await stopNode(n).catch(() => undefined);
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("a follower coordinator", () => {
  it("is ready, redirects API calls to the leader, and takes over when the leader dies", async () => {
    const a = await startNode("first");
    await a.coordinator.waitLeader(15_000);
    const b = await startNode("second");
    expect(b.coordinator.isLeader()).toBe(false);

    await waitFor("the follower to know the leader", async () => b.coordinator.leader()?.apiUrl === a.api.url, 10_000, 100);
    expect(b.coordinator.leader()).toEqual({ id: "first", apiUrl: a.api.url });

    for (const n of [a, b]) {
      const r = await fetch(`${n.api.url}/readyz`);
      expect(r.status, n.id).toBe(200);
      expect(await r.json()).toMatchObject({ ready: true, leader: n === a, leaderId: "first" });
    }

    const redirected = await get(`${b.api.url}/v1/federations/follow?x=1`);
    expect(redirected.status).toBe(307);
    expect(redirected.headers.get("location")).toBe(`${a.api.url}/v1/federations/follow?x=1`);
    const direct = await get(redirected.headers.get("location") ?? "");
    expect(direct.status).toBe(200);
    expect(await direct.json()).toMatchObject({ name: "follow" });

    const killedAt = Date.now();
    await stopNode(a, true);
    await b.coordinator.waitLeader(15_000);
    const tookOverMs = Date.now() - killedAt;
    expect(tookOverMs).toBeLessThan(10_000);
    expect(b.coordinator.leader()).toEqual({ id: "second", apiUrl: b.api.url });
    const r = await get(`${b.api.url}/v1/federations/follow`);
    expect(r.status).toBe(200);
    expect((await fetch(`${b.api.url}/readyz`)).status).toBe(200);
  }, 60_000);
});

