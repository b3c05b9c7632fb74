/**
 * The lab's NATS security, as a deployment would set it up (docs/operations.md, "Security
 * model"): a CA and a server certificate for its nats-server, one nkey identity per process
 * (two coordinators, one agent per region) written as seed files (mode 0600), and the server's
 * `authorization` block that gives each identity its role's subjects (src/bus/permissions.ts).
 * No user without an identity can connect.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createIdentity, identityFromSeed, natsAuthorization, type AgentGrant, type BusIdentity } from "../bus/index.js";
import { ensureCertificates } from "./kube-api/tls.js";

/** Coordinators the lab makes identities for: the chaos suite runs two at once. */
export const LAB_COORDINATORS = 2;

export interface LabBusSecurity {
  caFile: string;
  /** The servers' certificate (client TLS and routes). */
  serverTls: { certFile: string; keyFile: string; caFile: string };
  /** Seed files: `coordinators[i]` for coordinator i+1, `agents.get(region)`. */
  coordinatorFiles: string[];
  agentFiles: Map<string, string>;
  /** Public keys of the coordinators (`bus.coordinatorKeys`). */
  coordinatorKeys: string[];
  /** `tls` and `authorization` for nats-server's config. */
  serverSettings: Record<string, unknown>;
  /** The identity in one of the seed files. */
  identity(file: string): BusIdentity;
}

export async function makeLabBusSecurity(dir: string, regions: readonly { region: string; members: AgentGrant["members"] }[]): Promise<LabBusSecurity> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tls = await ensureCertificates(join(dir, "tls"), "nats", "127.0.0.1");
  const seeds = new Map<string, string>();
  const write = async (name: string): Promise<{ file: string; publicKey: string }> => {
    const id = createIdentity();
    const file = join(dir, `${name}.nk`);
    await writeFile(file, `# pgfed lab NATS identity of ${name}: ${id.publicKey}\n${id.seed}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    seeds.set(file, id.seed);
    return { file, publicKey: id.publicKey };
  };
  const coordinators = [];
  for (let i = 1; i <= LAB_COORDINATORS; i++) coordinators.push(await write(`coordinator-${i}`));
  const agents: AgentGrant[] = [];
  const agentFiles = new Map<string, string>();
  for (const r of regions) {
    const a = await write(`agent-${r.region}`);
    agentFiles.set(r.region, a.file);
    agents.push({ publicKey: a.publicKey, agentId: r.region, region: r.region, members: r.members });
  }
  const coordinatorKeys = coordinators.map((c) => c.publicKey);
  return {
    caFile: tls.caFile,
    serverTls: { certFile: tls.certFile, keyFile: tls.keyFile, caFile: tls.caFile },
    coordinatorFiles: coordinators.map((c) => c.file),
    agentFiles,
    coordinatorKeys,
    serverSettings: {
      tls: { cert_file: tls.certFile, key_file: tls.keyFile, ca_file: tls.caFile, timeout: 2 },
      authorization: natsAuthorization({ coordinators: coordinatorKeys, agents }),
    },
    identity: (file) => identityFromSeed(seeds.get(file) ?? "", file),
  };
}
