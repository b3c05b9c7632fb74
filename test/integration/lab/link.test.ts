/**
 * The lab's network link (src/lab/link.ts) with a real NATS server and the real NATS client: bytes
 * flow through it, a partition holds them (a request times out, the connection is not reset),
 * the heal lets the same connection carry on, and latency delays each way.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLink, type Link } from "../../../src/lab/link.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";

let dir: string;
let nats: NatsServer;
let link: Link;
let direct: NatsConnection;
let through: NatsConnection;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-link-"));
  nats = await startNats({ dir });
  link = await startLink({ host: "127.0.0.1", port: Number(new URL(nats.url).port) }, "nats");
  direct = await connect({ servers: nats.url });
  direct.subscribe("echo", {
    callback: (_e, m) => {
      m.respond(m.data);
    },
  });
  await direct.flush();
  through = await connect({ servers: link.url, reconnect: false });
});

afterAll(async () => {
  await through?.close().catch(() => undefined);
  await direct?.close().catch(() => undefined);
  await link?.close();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

const echo = async (timeout: number) => new TextDecoder().decode((await through.request("echo", "ping", { timeout })).data);

describe("a lab link in front of NATS", () => {
  it("carries a connection, holds it while partitioned and lets the same connection go on after the heal", async () => {
    expect(link.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(await echo(1_000)).toBe("ping");
    link.partition();
    await expect(echo(500)).rejects.toThrow(/timeout/i);
    link.heal();
    expect(await echo(1_000)).toBe("ping");
    expect(through.isClosed()).toBe(false);
  });

  it("holds a new connection until the heal", async () => {
    link.partition();
    const pending = connect({ servers: link.url, reconnect: false, timeout: 5_000 });
    const early = await Promise.race([pending.then(() => "connected"), new Promise((r) => setTimeout(() => r("held"), 300))]);
    expect(early).toBe("held");
    link.heal();
    const late = await pending;
    expect(late.isClosed()).toBe(false);
    await late.close();
  });

  it("adds its latency each way", async () => {
    const t0 = performance.now();
    await echo(1_000);
    const base = performance.now() - t0;
    link.setLatency(100);
    try {
      const t1 = performance.now();
      await echo(2_000);
      // The request and its reply each wait 100 ms in the link.
      expect(performance.now() - t1).toBeGreaterThanOrEqual(195);
      expect(base).toBeLessThan(100);
    } finally {
      link.setLatency(0);
    }
  });
});
