/**
 * Re-cloning a diverged former primary (CNPG.md, "Unplanned failover"): its Cluster is deleted with
 * its volumes and created again as a replica cluster of the current primary, bootstrapped from the
 * primary with pg_basebackup, archiving under a fresh object-store path. CNPG never runs pg_rewind
 * here, and a diverged instance must never simply be pointed at the new primary (it can hang while
 * serving diverged reads), so the data directory is thrown away on purpose.
 *
 * The old archive path is left untouched: it holds the WAL the diverged member wrote after the
 * fork, the only copy of those writes, kept so an operator can salvage them (docs/operations.md).
 * The new path is `<old server name>-e<epoch>`, so every rejoin gets its own and a repeated rejoin
 * at the same epoch lands on the same one (idempotent).
 *
 * Pure: the manifest is computed from the old object; the agent deletes and creates.
 */
import { PgfedError } from "../errors.js";
import { FENCED_INSTANCES_ANNOTATION, type Cluster } from "./cluster.js";
import { selfName } from "./readers.js";

/** Set on the recreated Cluster: the epoch whose primary it was cloned from (a repeated rejoin sees it and resumes). */
export const RECLONED_FOR_EPOCH_ANNOTATION = "pgfed.io/recloned-for-epoch";
/** Set on the recreated Cluster: the object-store server name of the kept archive with the diverged WAL. */
export const DIVERGED_ARCHIVE_ANNOTATION = "pgfed.io/diverged-archive";
/** The Barman Cloud CNPG-I plugin's name in `spec.plugins`. */
export const BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io";

/** What an object-store server name may be (also checked on bus commands that carry one). */
export const SERVER_NAME = /^[A-Za-z0-9_.-]{1,200}$/;

/** Where a Cluster's WAL archive is configured: the Barman plugin, the legacy in-tree stanza, or nowhere. */
export type ArchiveKind = "plugin" | "barmanObjectStore" | "none";

/**
 * The object-store "server name" the Cluster archives under (the Barman plugin's
 * `parameters.serverName`, else `spec.backup.barmanObjectStore.serverName`), defaulting to the
 * Cluster's name as CNPG does.
 */
export function archiveServerName(c: Cluster): string {
  for (const p of c.spec.plugins ?? []) {
    const v = paramsOf(p)?.serverName;
    if (typeof v === "string" && SERVER_NAME.test(v)) return v;
  }
  const v = recordOf(c.spec.backup?.barmanObjectStore)?.serverName;
  if (typeof v === "string" && SERVER_NAME.test(v)) return v;
  return c.metadata.name;
}

export function archiveKind(c: Cluster): ArchiveKind {
  if ((c.spec.plugins ?? []).some((p) => p.name === BARMAN_PLUGIN)) return "plugin";
  if (c.spec.backup?.barmanObjectStore !== undefined) return "barmanObjectStore";
  return "none";
}

/** The server name a rejoin at `epoch` archives under: the old one with any earlier `-e<n>` suffix replaced. */
export function recloneServerName(oldServerName: string, epoch: number): string {
  return `${oldServerName.replace(/-e\d+$/, "")}-e${epoch}`;
}

/** The epoch a recreated Cluster was cloned for, or undefined when it was never re-cloned by pgfed (or the value is unreadable). */
export function reclonedForEpoch(c: Cluster): number | undefined {
  const v = c.metadata.annotations?.[RECLONED_FOR_EPOCH_ANNOTATION];
  if (v === undefined || !/^\d{1,15}$/.test(v)) return undefined;
  return Number(v);
}

export interface ReclonePlan {
  /** The object to create (no status, no server-set metadata). */
  manifest: Record<string, unknown>;
  archive: ArchiveKind;
  /** Server name of the archive that is kept (it holds the diverged WAL). */
  keptServerName: string;
  /** Server name the recreated Cluster archives under (equal to the kept one when no archive is configured). */
  newServerName: string;
}

/**
 * The Cluster to create in place of `old`: same spec, but a replica cluster of `primary` (its
 * topology name), without a promotion token, unfenced, bootstrapped with pg_basebackup from the
 * primary, archiving under a fresh server name. Throws `cnpg.invalid_reclone` when that is not
 * possible (not a distributed topology, primary unlisted, or the member would follow itself).
 */
export function recloneManifest(old: Cluster, opts: { primary: string; epoch: number }): ReclonePlan {
  const self = selfName(old);
  const doing = `while planning the re-clone of ${old.metadata.namespace ?? "default"}/${old.metadata.name}`;
  if (!old.spec.replica) throw new PgfedError("cnpg.invalid_reclone", `${doing}: spec.replica is not set, so it is not part of a distributed topology`);
  if (opts.primary === self) throw new PgfedError("cnpg.invalid_reclone", `${doing}: ${self} cannot be re-cloned from itself`);
  if (!(old.spec.externalClusters ?? []).some((e) => e.name === opts.primary)) {
    throw new PgfedError("cnpg.invalid_reclone", `${doing}: spec.externalClusters has no entry named ${opts.primary} to clone from`);
  }
  if (!Number.isSafeInteger(opts.epoch) || opts.epoch < 0) throw new PgfedError("cnpg.invalid_reclone", `${doing}: epoch ${opts.epoch} is not a non-negative integer`);

  const spec = structuredClone(old.spec) as Record<string, unknown> & Cluster["spec"];
  const archive = archiveKind(old);
  const kept = archiveServerName(old);
  const fresh = archive === "none" ? kept : recloneServerName(kept, opts.epoch);

  const { promotionToken: _token, ...replica } = spec.replica ?? { source: opts.primary };
  // A replica cluster follows the primary; source names it so the clone and the WAL come from it.
  spec.replica = { ...replica, primary: opts.primary, source: opts.primary };
  // The old bootstrap (initdb on a former primary) would create a new system: clone the primary instead.
  spec.bootstrap = { pg_basebackup: { source: opts.primary } };
  if (archive === "plugin") {
    spec.plugins = (spec.plugins ?? []).map((p) => (p.name === BARMAN_PLUGIN ? { ...p, parameters: { ...(paramsOf(p) ?? {}), serverName: fresh } } : p));
  } else if (archive === "barmanObjectStore") {
    spec.backup = { ...spec.backup, barmanObjectStore: { ...(recordOf(spec.backup?.barmanObjectStore) ?? {}), serverName: fresh } };
  }
  // Other members read this member's WAL through its own externalClusters entry: keep it consistent.
  // (Where it named the kept server name: the rule the other members' entries follow, see retargetArchive.)
  spec.externalClusters = (spec.externalClusters ?? []).map((e) => (e.name === self && entryArchiveServerName(e) === kept ? entryWithServerName(e, fresh) : e));

  const annotations: Record<string, string> = { ...(old.metadata.annotations ?? {}) };
  delete annotations[FENCED_INSTANCES_ANNOTATION];
  delete annotations["kubectl.kubernetes.io/last-applied-configuration"];
  annotations[RECLONED_FOR_EPOCH_ANNOTATION] = String(opts.epoch);
  if (archive !== "none") annotations[DIVERGED_ARCHIVE_ANNOTATION] = kept;

  const metadata: Record<string, unknown> = { name: old.metadata.name, annotations };
  if (old.metadata.namespace !== undefined) metadata.namespace = old.metadata.namespace;
  if (old.metadata.labels !== undefined) metadata.labels = { ...old.metadata.labels };
  return {
    manifest: { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata, spec },
    archive,
    keptServerName: kept,
    newServerName: fresh,
  };
}

/**
 * The archive server name an `externalClusters` entry reads WAL from: its Barman plugin's
 * `parameters.serverName` or its `barmanObjectStore.serverName`; `null` when it names an archive
 * without a server name (the plugin then defaults it), `undefined` when it names no archive.
 */
export function entryArchiveServerName(e: { name: string; plugin?: Record<string, unknown>; barmanObjectStore?: Record<string, unknown> }): string | null | undefined {
  const fromPlugin = e.plugin?.name === BARMAN_PLUGIN ? recordOf(e.plugin.parameters)?.serverName : undefined;
  if (typeof fromPlugin === "string") return fromPlugin;
  const fromStore = e.barmanObjectStore?.serverName;
  if (typeof fromStore === "string") return fromStore;
  return e.plugin?.name === BARMAN_PLUGIN || e.barmanObjectStore !== undefined ? null : undefined;
}

/** An externalClusters entry reading its archive under `to`, whatever server name it had (or none). */
export function entryWithServerName<E extends { plugin?: Record<string, unknown>; barmanObjectStore?: Record<string, unknown> }>(e: E, to: string): E {
  const out = { ...e };
  if (e.plugin?.name === BARMAN_PLUGIN) out.plugin = { ...e.plugin, parameters: { ...(recordOf(e.plugin.parameters) ?? {}), serverName: to } };
  if (e.barmanObjectStore !== undefined) out.barmanObjectStore = { ...e.barmanObjectStore, serverName: to };
  return out;
}

function paramsOf(p: { name: string }): Record<string, unknown> | undefined {
  return recordOf((p as { parameters?: unknown }).parameters);
}

function recordOf(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
