import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, type CliIo } from "../../../src/cli/program.js";
import { loadIdentity, type NatsAuthorization } from "../../../src/bus/index.js";

function capture(): CliIo & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return { out: (t) => (out += t), err: (t) => (err += t), stdout: () => out, stderr: () => err };
}

const dir = mkdtempSync(join(tmpdir(), "pgfed-nats-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const example = new URL("../../../deploy/examples/pgfed.yaml", import.meta.url).pathname;

async function identity(name: string): Promise<string> {
  const io = capture();
  expect(await runCli(["nats", "identity", join(dir, name)], io), io.stderr()).toBe(0);
  return io.stdout().trim();
}

describe("pgfed nats", () => {
  it("identity writes a seed only its owner can read and prints the public key, and never overwrites one", async () => {
    const pub = await identity("c1.nk");
    const file = join(dir, "c1.nk");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadIdentity(file).publicKey).toBe(pub);
    const io = capture();
    expect(await runCli(["nats", "identity", file], io)).toBe(2);
    expect(io.stderr()).toMatch(/exists; pgfed never overwrites an identity/);
    expect(loadIdentity(file).publicKey).toBe(pub);
  });

  it("authorization gives each agent its region's members only, and refuses unknown regions and bad keys", async () => {
    const c = await identity("c2.nk");
    const eu = await identity("eu.nk");
    const us = await identity("us.nk");
    const io = capture();
    expect(await runCli(["nats", "authorization", "--config", example, "--coordinator", c, "--agent", `eu-west=${eu}`, "--agent", `us-east=${us}`], io), io.stderr()).toBe(0);
    const { authorization } = JSON.parse(io.stdout()) as { authorization: NatsAuthorization };
    expect(authorization.users.map((u) => u.nkey)).toEqual([c, eu, us]);
    const euAllow = authorization.users[1]?.permissions.publish.allow ?? [];
    expect(euAllow).toContain("pgfed.orders.obs.pg-eu");
    expect(euAllow).not.toContain("pgfed.orders.obs.pg-us");
    expect(euAllow.filter((s) => s.startsWith("pgfed.") && s.includes(".cmd."))).toEqual([]);

    const unknown = capture();
    expect(await runCli(["nats", "authorization", "--config", example, "--coordinator", c, "--agent", `mars=${eu}`], unknown)).toBe(64);
    expect(unknown.stderr()).toMatch(/region "mars" is not in/);
    const badKey = capture();
    expect(await runCli(["nats", "authorization", "--config", example, "--coordinator", "UNOTAKEY"], badKey)).toBe(64);
    expect(badKey.stderr()).toMatch(/public user nkey/);
  });
});
