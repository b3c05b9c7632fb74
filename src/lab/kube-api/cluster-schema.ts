/**
 * The lab's reduced schema of CNPG's `Cluster` CRD (api/v1/cluster_types.go in CNPG), written for
 * the stand-in, not copied from CNPG's generated CRD. Every top-level field of `spec` and `status`
 * that CNPG declares is declared here with its type, so nothing CNPG accepts is pruned; the fields
 * pgfed reads and writes (spec.replica, spec.externalClusters, spec.bootstrap, spec.instances,
 * spec.plugins, the status fields of CNPG.md) are described to their leaves. Subtrees pgfed never
 * touches are kept as sent (`x-kubernetes-preserve-unknown-fields`, which CNPG itself does not
 * use): unknown fields deep inside them are not pruned, unlike on a real cluster.
 * Also the CRD's printer columns and scale subresource paths.
 */
import type { StructuralSchema } from "./structural-schema.js";

const str = (description?: string, extra: StructuralSchema = {}): StructuralSchema => ({ type: "string", ...(description ? { description } : {}), ...extra });
const int = (description?: string, extra: StructuralSchema = {}): StructuralSchema => ({ type: "integer", ...(description ? { description } : {}), ...extra });
const bool = (description?: string): StructuralSchema => ({ type: "boolean", ...(description ? { description } : {}) });
const kept = (description?: string): StructuralSchema => ({ type: "object", ...(description ? { description } : {}), "x-kubernetes-preserve-unknown-fields": true });
const keptList = (description?: string, extra: StructuralSchema = {}): StructuralSchema => ({
  type: "array",
  ...(description ? { description } : {}),
  items: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
  ...extra,
});
const strings = (description?: string): StructuralSchema => ({ type: "array", ...(description ? { description } : {}), items: { type: "string" } });
const stringMap = (description: string): StructuralSchema => ({ type: "object", description, additionalProperties: { type: "string" } });
const secretKey = (description: string): StructuralSchema => ({
  type: "object",
  description,
  required: ["key"],
  properties: { key: str("The key of the secret to select from"), name: str("Name of the referent"), optional: bool("Whether the secret or its key must exist") },
  "x-kubernetes-map-type": "atomic",
});
const localRef = (description: string): StructuralSchema => ({ type: "object", description, required: ["name"], properties: { name: str("Name of the referent") } });

const replica: StructuralSchema = {
  type: "object",
  description: "Replica cluster configuration: the distributed topology this cluster belongs to, or a legacy replica cluster",
  required: ["source"],
  properties: {
    self: str("This cluster's name in the distributed topology; defaults to metadata.name"),
    primary: str("The name of the topology's primary cluster; this cluster is a replica cluster unless it equals self"),
    source: str("The external cluster this cluster replicates from when it is a replica cluster", { minLength: 1 }),
    enabled: bool("Legacy switch making this a replica cluster; not allowed together with primary"),
    promotionToken: str("The demotion token of the former primary, checked before this replica cluster is promoted"),
    minApplyDelay: str("A delay applied to WAL replay (recovery_min_apply_delay); not allowed with a promotion token"),
  },
};

const externalCluster: StructuralSchema = {
  type: "object",
  description: "A Postgres cluster this cluster can connect to or read WAL and backups of",
  required: ["name"],
  properties: {
    name: str("The name of the external cluster, as spec.replica and spec.bootstrap refer to it"),
    connectionParameters: stringMap("libpq connection parameters (host, user, dbname, sslmode, ...)"),
    sslCert: secretKey("The client certificate for the connection"),
    sslKey: secretKey("The client private key for the connection"),
    sslRootCert: secretKey("The CA the server certificate is checked against"),
    password: secretKey("The password for the connection"),
    barmanObjectStore: { ...kept("The in-tree Barman object store holding this cluster's WAL archive and backups"), required: ["destinationPath"], properties: { destinationPath: str("Where the archive is, e.g. s3://bucket/path"), serverName: str("The server name of the archive inside the store") } },
    plugin: {
      type: "object",
      description: "A CNPG-i plugin reading this cluster's archive (e.g. barman-cloud.cloudnative-pg.io)",
      required: ["name"],
      properties: { name: str("The plugin name"), enabled: bool("Whether the plugin is used"), isWALArchiver: bool("Whether the plugin archives WAL"), parameters: stringMap("The plugin parameters") },
    },
  },
};

const bootstrap: StructuralSchema = {
  type: "object",
  description: "How the cluster's first instance is created: one of initdb, recovery, pg_basebackup",
  properties: {
    initdb: {
      ...kept("Create a new empty cluster with initdb"),
      properties: { database: str("The application database"), owner: str("The owner of the application database"), secret: localRef("The secret with the owner's credentials") },
    },
    recovery: {
      ...kept("Restore from a backup or from the WAL archive of an external cluster"),
      properties: {
        source: str("The external cluster to restore from"),
        database: str("The application database"),
        owner: str("The owner of the application database"),
        backup: { ...kept("The Backup object to restore"), required: ["name"] },
        recoveryTarget: kept("Where to stop recovery"),
        volumeSnapshots: { ...kept("Volume snapshots to restore from"), required: ["storage"] },
        secret: localRef("The secret with the owner's credentials"),
      },
    },
    pg_basebackup: {
      type: "object",
      description: "Clone a running external cluster with pg_basebackup",
      required: ["source"],
      properties: { source: str("The external cluster to clone", { minLength: 1 }), database: str("The application database"), owner: str("The owner of the application database"), secret: localRef("The secret with the owner's credentials") },
    },
  },
};

const plugin: StructuralSchema = {
  type: "object",
  required: ["name"],
  properties: { name: str("The plugin name"), enabled: bool("Whether the plugin is used"), isWALArchiver: bool("Whether this plugin archives WAL"), parameters: stringMap("The plugin parameters") },
};

const spec: StructuralSchema = {
  type: "object",
  description: "The desired state of the Postgres cluster",
  required: ["instances"],
  properties: {
    affinity: kept(),
    backup: kept("The backup configuration, among it the in-tree Barman object store"),
    bootstrap,
    certificates: kept(),
    description: str("A description of the cluster"),
    enablePDB: bool(),
    enableSuperuserAccess: bool(),
    env: keptList(),
    envFrom: keptList(),
    ephemeralVolumeSource: kept(),
    ephemeralVolumesSizeLimit: kept(),
    externalClusters: { type: "array", description: "The other clusters this cluster can refer to by name", items: externalCluster },
    failoverDelay: int(),
    imageCatalogRef: { ...kept(), "x-kubernetes-map-type": "atomic" },
    imageName: str("The Postgres container image"),
    imagePullPolicy: str(),
    imagePullSecrets: keptList(),
    inheritedMetadata: kept(),
    instances: int("The number of Postgres instances", { minimum: 1, default: 1 }),
    livenessProbeTimeout: int(),
    logLevel: str(),
    managed: kept(),
    maxSyncReplicas: int(),
    minSyncReplicas: int(),
    monitoring: kept(),
    nodeMaintenanceWindow: kept(),
    plugins: { type: "array", description: "The CNPG-i plugins of the cluster, e.g. the Barman Cloud WAL archiver", items: plugin },
    podSecurityContext: kept(),
    podSelectorRefs: keptList(undefined, { "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
    postgresGID: int(),
    postgresUID: int(),
    postgresql: { ...kept("The Postgres configuration"), properties: { parameters: stringMap("postgresql.conf parameters, e.g. archive_timeout") } },
    primaryLease: kept(),
    primaryUpdateMethod: str(),
    primaryUpdateStrategy: str(),
    priorityClassName: str(),
    probes: kept(),
    projectedVolumeTemplate: kept(),
    replica,
    replicationSlots: kept(),
    resources: kept(),
    schedulerName: str(),
    seccompProfile: kept(),
    securityContext: kept(),
    serviceAccountName: str(),
    serviceAccountTemplate: kept(),
    smartShutdownTimeout: int(),
    startDelay: int(),
    stopDelay: int(),
    storage: kept(),
    superuserSecret: kept(),
    switchoverDelay: int(),
    tablespaces: keptList(),
    topologySpreadConstraints: keptList(),
    walStorage: kept(),
  },
};

const condition: StructuralSchema = {
  type: "object",
  required: ["lastTransitionTime", "message", "reason", "status", "type"],
  properties: {
    type: str("The condition type, e.g. Ready, ContinuousArchiving, ReplicaClusterSwitch", { maxLength: 316 }),
    status: str("True, False or Unknown", { enum: ["True", "False", "Unknown"] }),
    reason: str("A CamelCase reason", { minLength: 1, maxLength: 1024 }),
    message: str("A human readable message", { maxLength: 32768 }),
    lastTransitionTime: str("When status last changed", { format: "date-time" }),
    observedGeneration: int(undefined, { minimum: 0 }),
  },
};

const status: StructuralSchema = {
  type: "object",
  description: "The observed state of the Postgres cluster, written by the operator",
  properties: {
    availableArchitectures: keptList(),
    certificates: kept(),
    cloudNativePGCommitHash: str(),
    cloudNativePGOperatorHash: str(),
    conditions: { type: "array", description: "The conditions of the cluster", items: condition },
    configMapResourceVersion: kept(),
    currentPrimary: str("The instance that is the primary now"),
    currentPrimaryFailingSinceTimestamp: str(),
    currentPrimaryTimestamp: str(),
    danglingPVC: strings(),
    demotionToken: str("The token of the last demotion, for the promotion of the next primary"),
    firstRecoverabilityPoint: str(),
    firstRecoverabilityPointByMethod: { type: "object", additionalProperties: { type: "string", format: "date-time" } },
    healthyPVC: strings(),
    image: str(),
    initializingPVC: strings(),
    instanceNames: strings(),
    instances: int("The number of instances"),
    instancesReportedState: { type: "object", additionalProperties: kept() },
    instancesStatus: { type: "object", additionalProperties: strings() },
    jobCount: int(),
    lastFailedBackup: str(),
    lastPromotionToken: str("The promotion token the cluster was last promoted with"),
    lastSuccessfulBackup: str(),
    lastSuccessfulBackupByMethod: { type: "object", additionalProperties: { type: "string", format: "date-time" } },
    latestGeneratedNode: int(),
    managedRolesStatus: kept(),
    onlineUpdateEnabled: bool(),
    operatorCertificateFingerprint: str(),
    pgDataImageInfo: kept(),
    phase: str("The cluster's phase, e.g. Cluster in healthy state"),
    phaseReason: str("Why the cluster is in its phase"),
    pluginStatus: keptList(),
    podSelectorRefs: keptList(undefined, { "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
    poolerIntegrations: kept(),
    pvcCount: int(),
    readService: str(),
    readyInstances: int("The number of ready instances"),
    resizingPVC: strings(),
    secretsResourceVersion: kept(),
    selector: str(),
    switchReplicaClusterStatus: { type: "object", description: "The progress of a switch of the replica cluster role", properties: { inProgress: bool("Whether a switch is in progress") } },
    systemID: str("The Postgres system identifier"),
    tablespacesStatus: keptList(),
    targetPgDataImageInfo: kept(),
    targetPrimary: str("The instance that should be the primary"),
    targetPrimaryTimestamp: str(),
    timelineID: int("The timeline of the primary"),
    topology: kept(),
    unusablePVC: strings(),
    writeService: str("The service writes go to, <name>-rw"),
  },
};

/** `openAPIV3Schema` of the Cluster CRD as the stand-in serves it. */
export const CLUSTER_SCHEMA: StructuralSchema = {
  type: "object",
  description: "A highly available Postgres cluster managed by CloudNativePG",
  required: ["metadata", "spec"],
  properties: {
    apiVersion: str("The versioned schema of this representation of an object"),
    kind: str("The REST resource this object represents"),
    metadata: { type: "object" },
    spec,
    status,
  },
};

export interface PrinterColumn {
  name: string;
  type: "date" | "integer" | "string";
  jsonPath: string;
  description?: string;
  priority?: number;
}

/** additionalPrinterColumns of CNPG's Cluster CRD (what `kubectl get clusters` prints). */
export const CLUSTER_PRINTER_COLUMNS: PrinterColumn[] = [
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  { name: "Instances", type: "integer", jsonPath: ".status.instances", description: "Number of instances" },
  { name: "Ready", type: "integer", jsonPath: ".status.readyInstances", description: "Number of ready instances" },
  { name: "Status", type: "string", jsonPath: ".status.phase", description: "Cluster current status" },
  { name: "Primary", type: "string", jsonPath: ".status.currentPrimary", description: "Primary pod" },
  { name: "SyncTopology", type: "string", jsonPath: ".status.conditions[?(@.type=='SyncReplicationTopologySatisfied')].reason", description: "Failure domain topology satisfaction status", priority: 1 },
];
