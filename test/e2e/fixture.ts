/**
 * Shared setup of the e2e scenarios: a lab (real NATS and Postgres, Kubernetes API and CNPG
 * stand-ins) with its control plane (an agent per region and a coordinator), and small probes.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Config } from "../../src/config.js";
import type { AuditEntry, FederationView, OperationView } from "../../src/coordinator/index.js";
import type { PgConnectionInfo } from "../../src/lab/cnpg/instance.js";
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from "../../src/lab/control-plane.js";
import { LAB_FEDERATION, LAB_NAMESPACE, startLab, type Lab } from "../../src/lab/lab.js";
import { createLogger, silentLogger, type Logger } from "../../src/log.js";

export const FED = LAB_FEDERATION;

export interface E2E {
  dir: string;
  lab: Lab;
  plane: ControlPlane;
  log: Logger;
  stop(): Promise<void>;
}

export function testLogger(): Logger {
  return process.env.PGFED_TEST_LOG ? createLogger({ level: process.env.PGFED_TEST_LOG, pretty: false }) : silentLogger();
}

/** Starts a lab (2 regions unless told) and its control plane; waits until the coordinator leads and has lag figures for every replica. */
export async function startE2E(
  name: string,
  opts: { regions?: 2 | 3; config?: (c: Config) => Config; plane?: Pick<ControlPlaneOptions, "coordinatorLeaseTtlMs" | "agentHeartbeatMs">; log?: Logger; natsCluster?: boolean } = {},
): Promise<E2E> {
  const dir = await mkdtemp(join(tmpdir(), `pgfed-e2e-${name}-`));
  await chmod(dir, 0o755); // Postgres runs as the postgres user
  const log = opts.log ?? testLogger();
  const lab = await startLab({ dir, regions: opts.regions ?? 2, log, ...(opts.natsCluster ? { natsCluster: true } : {}) });
  let plane: ControlPlane | undefined;
  try {
    plane = await startControlPlane(lab, { log, ...opts.plane, ...(opts.config ? { config: opts.config(lab.config) } : {}) });
    await plane.coordinator.waitLeader(30_000);
    await waitUntil("the coordinator to see pg-eu as primary and a lag figure for every replica", 30_000, () => {
      const f = plane?.coordinator.getFederation(FED);
      const replicas = f?.members.filter((m) => m.name !== "pg-eu") ?? [];
      return f?.designatedPrimary === "pg-eu" && replicas.length > 0 && replicas.every((m) => m.lagSeconds !== null && m.lagSeconds !== undefined);
    });
  } catch (e) {
    await plane?.stop().catch(() => undefined);
    await lab.stop();
    throw e;
  }
  const p = plane;
  return {
    dir,
    lab,
    plane: p,
    log,
    stop: async () => {
      await p.stop().catch(() => undefined);
      await lab.stop();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/**
 * Restores a region as `pgfed lab restore-region` does: Kubernetes API back, then the region's
 * agent (if it is not running) with its fence sweep, then the instance restart.
 */
export async function restoreRegion(e: E2E, region: string): Promise<void> {
  await e.lab.restoreRegion(region, {
    beforeInstance: async () => {
      if (!e.plane.agents.has(region)) await e.plane.startAgent(region);
    },
  });
}

export async function waitUntil(what: string, timeoutMs: number, ok: () => boolean | Promise<boolean>, everyMs = 50): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await ok()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function connectionOf(lab: Lab, member: string): PgConnectionInfo {
  const r = lab.regionOfMember(member);
  const inst = r.operator.instance(LAB_NAMESPACE, r.member.cluster);
  if (!inst) throw new Error(`no instance for ${member}`);
  return inst.connection;
}

export function federation(e: E2E): FederationView {
  const f = e.plane.coordinator.getFederation(FED);
  if (!f) throw new Error("federation demo is not loaded");
  return f;
}

/** Waits for the operation to finish (completed, aborted…) and returns its view. */
export async function finished(e: E2E, id: string, timeoutMs: number): Promise<OperationView> {
  let op: OperationView | undefined;
  await waitUntil(`operation ${id} to finish`, timeoutMs, () => {
    op = e.plane.coordinator.getOperation(id);
    return op?.finishedAt !== null && op?.finishedAt !== undefined;
  }, 100);
  if (!op) throw new Error(`operation ${id} vanished`);
  return op;
}

export async function query<T extends pg.QueryResultRow>(conn: PgConnectionInfo, sql: string): Promise<T[]> {
  const c = new pg.Client({ ...conn, connectionTimeoutMillis: 1_000, statement_timeout: 2_000 });
  c.on("error", () => undefined);
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** True when the member accepts a write right now. */
export async function writable(conn: PgConnectionInfo): Promise<boolean> {
  try {
    const rows = await query<{ rec: boolean }>(conn, "SELECT pg_is_in_recovery() AS rec");
    return rows[0]?.rec === false;
  } catch {
    return false;
  }
}

export function storyOf(entries: AuditEntry[], operationId: string): string[] {
  return entries.filter((a) => a.operationId === operationId && a.action === "transition").map((a) => a.description);
}

/** One INSERT attempt of a write probe: its round, member, interval, outcome and inserted row id. */
export interface ProbeResult {
  round: number;
  member: string;
  startMs: number;
  endMs: number;
  ok: boolean;
  /** Id of the inserted row when ok. */
  id?: number;
  error?: string;
}

/**
 * Tries one INSERT into `table` (columns id bigserial, member text) on every member every `everyMs`
 * (a round), each member on its own kept connection, and records every attempt.
 */
/** The table startWriteProbe writes into, created on the primary pg-eu (replicated to the others). */
export async function createProbeTable(e: E2E, table: string): Promise<void> {
  await query(connectionOf(e.lab, "pg-eu"), `CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, member text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
}

/** Two writable primaries at the same moment: an accepted write on pg-eu and one on pg-us whose intervals overlap. */
export function overlappingWrites(results: readonly ProbeResult[]): { eu: ProbeResult; us: ProbeResult }[] {
  const us = results.filter((r) => r.ok && r.member === "pg-us");
  return results.filter((r) => r.ok && r.member === "pg-eu").flatMap((a) => us.filter((b) => a.startMs <= b.endMs && b.startMs <= a.endMs).map((b) => ({ eu: a, us: b })));
}

export function startWriteProbe(e: E2E, table: string, members: readonly string[], everyMs: number): { results: ProbeResult[]; stop(): Promise<void> } {
  const results: ProbeResult[] = [];
  const clients = new Map<string, pg.Client>();
  let running = true;
  const once = async (member: string, round: number): Promise<ProbeResult> => {
    const startMs = Date.now();
    try {
      let c = clients.get(member);
      if (!c) {
        const fresh = new pg.Client({ ...connectionOf(e.lab, member), connectionTimeoutMillis: 500, query_timeout: 1_000 });
        fresh.on("error", () => undefined);
        clients.set(member, fresh);
        c = fresh;
        await c.connect();
      }
      const r = await c.query<{ id: string }>(`INSERT INTO ${table} (member) VALUES ($1) RETURNING id`, [member]);
      return { round, member, startMs, endMs: Date.now(), ok: true, id: Number(r.rows[0]?.id) };
    } catch (err) {
      const c = clients.get(member);
      clients.delete(member);
      await c?.end().catch(() => undefined);
      return { round, member, startMs, endMs: Date.now(), ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  };
  const loop = (async () => {
    for (let round = 0; running; round++) {
      const t = Date.now();
      results.push(...(await Promise.all(members.map((m) => once(m, round)))));
      await sleep(Math.max(0, everyMs - (Date.now() - t)));
    }
  })();
  return {
    results,
    stop: async () => {
      running = false;
      await loop;
      for (const c of clients.values()) await c.end().catch(() => undefined);
    },
  };
}
