/**
 * `pgfed run` while NATS is down is alive, not ready: the coordinator answers /healthz 200 and
 * /readyz 503 on its API address (the manifests' liveness probe must not restart it into a crash
 * loop), the agent the same on --metrics-listen; once NATS answers, the coordinator's real API
 * takes the address over and /readyz turns 200. Real processes, real nats-server, 127.0.0.1.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { freePort, waitFor } from "../../../src/lab/proc.js";
import { spawnPgfed, type PgfedProcess } from "../../support/pgfed-process.js";
import { twoMemberConfigDocument } from "../../support/two-member-config.js";

let dir: string;
let natsPort: number;
let nats: NatsServer | undefined;
let configPath: string;
const children: ChildProcess[] = [];

const pgfed = (args: string[]): PgfedProcess => spawnPgfed(args, children);

const status = async (url: string): Promise<number | undefined> => (await fetch(url).catch(() => undefined))?.status;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-run-probes-"));
  natsPort = await freePort();
  configPath = join(dir, "pgfed.yaml");
  await writeFile(
    configPath,
    JSON.stringify({ ...twoMemberConfigDocument("probes", `nats://127.0.0.1:${natsPort}`), api: { listen: "127.0.0.1:0" } }),
  );
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill("SIGKILL");
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("pgfed run while NATS is down", () => {
  it("is alive but not ready, coordinator and agent alike, and the coordinator turns ready once NATS answers", async () => {
    const apiPort = await freePort();
    const metricsPort = await freePort();
    const api = `http://127.0.0.1:${apiPort}`;
    const agentUrl = `http://127.0.0.1:${metricsPort}`;
    const coordinator = pgfed(["run", "--config", configPath, "--roles", "coordinator", "--id", "probes", "--api-listen", `127.0.0.1:${apiPort}`]);
    const agent = pgfed(["run", "--config", configPath, "--roles", "agent", "--regions", "eu-west", "--metrics-listen", `127.0.0.1:${metricsPort}`]);
    const explain = (e: unknown) => new Error(`${(e as Error).message}\ncoordinator:\n${coordinator.output()}\nagent:\n${agent.output()}`);

    await waitFor("the coordinator's /healthz", async () => (await status(`${api}/healthz`)) === 200, 60_000, 200).catch((e: unknown) => {
      throw explain(e);
    });
    await waitFor("the agent's /healthz", async () => (await status(`${agentUrl}/healthz`)) === 200, 60_000, 200).catch((e: unknown) => {
      throw explain(e);
    });
    // Several probe periods with NATS down: still alive, never ready, the process still running.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      for (const base of [api, agentUrl]) {
        expect(await status(`${base}/healthz`), base).toBe(200);
        const ready = await fetch(`${base}/readyz`);
        expect(ready.status, base).toBe(503);
        expect(((await ready.json()) as { message: string }).message).toContain(`waiting for NATS at nats://127.0.0.1:${natsPort}`);
      }
      // The API is not served yet: a clear 503, never a hang.
      expect(await status(`${api}/v1/federations`)).toBe(503);
    }
    // Prometheus still scrapes it (the process metrics; pgfed's own appear once the coordinator started).
    const metrics = await fetch(`${api}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^process_cpu_seconds_total /m);
    expect(coordinator.child.exitCode).toBeNull();
    expect(agent.child.exitCode).toBeNull();

    nats = await startNats({ dir: join(dir, "nats"), port: natsPort }).catch(async (e: unknown) => {
      throw new Error(`${(e as Error).message}\n${await readFile(join(dir, "nats", "nats-server.log"), "utf8").catch(() => "(no log)")}`);
    });
    await waitFor("the coordinator's /readyz to turn 200 on the same address", async () => (await status(`${api}/readyz`)) === 200, 60_000, 200).catch((e: unknown) => {
      throw explain(e);
    });
    expect(await status(`${api}/healthz`)).toBe(200);
    // The real API now: an unauthenticated /v1 call is a 401, not the starting 503.
    expect(await status(`${api}/v1/federations`)).toBe(401);
    expect(coordinator.output()).toContain("probes at");
  }, 150_000);
});
