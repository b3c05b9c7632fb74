/**
 * The NATS server's side of the security model: one user per pgfed identity (its public nkey)
 * with the subjects that role may use, rendered as nats-server's `authorization` block
 * (`pgfed nats authorization` prints it for a deployment; the lab writes it into its server's
 * config). Anything not allowed is refused by the server itself, so a leaked agent seed cannot:
 *
 * - publish a command, or another member's observation, lag sample or result (audit records only
 *   for the federations it serves: the fences it applies itself, see agentPermissions);
 * - read commands of members outside its region (its consumers may only filter on its own
 *   members' command subjects, and it may pull only from its own durable consumers);
 * - change the stream or the KV buckets, write a federation record, or take the coordinator lease.
 *
 * Reads of the KV buckets stay open to agents (federation records and leases are not secret;
 * agents need them). Each identity gets its own inbox prefix (`inboxPrefix`), so no one can
 * subscribe to the replies of another's requests (JetStream acks, KV reads).
 *
 * Subjects (JetStream's API of nats-server 2.9): a durable consumer with one filter is created on
 * `$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, which is what makes a per-filter rule
 * possible; messages are pulled on `$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>` and acked on
 * `$JS.ACK.<stream>.<name>.>`; a KV put is a publish on `$KV.<bucket>.<key>`.
 */
import { LEASE_BUCKET, leaseKeys } from "./lease.js";
import { STATE_BUCKET } from "./state.js";
import { STREAM_NAME, SUBJECT_ROOT, agentConsumerName, subjects } from "./subjects.js";

/** The inbox prefix of an identity: unique per key, so reply subjects are private to it. */
export function inboxPrefixFor(publicKey: string): string {
  return `_INBOX_${publicKey.slice(1, 17)}`;
}

export interface AgentGrant {
  /** Public nkey of the agent's identity. */
  publicKey: string;
  /** Agent id, which names its durable consumers (pgfed run uses the region). */
  agentId: string;
  region: string;
  /** The members this agent serves. */
  members: readonly { federation: string; member: string }[];
}

export interface AuthorizationSpec {
  /** Public nkeys of coordinators (every coordinator replica has its own). */
  coordinators: readonly string[];
  agents: readonly AgentGrant[];
}

export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

export interface NatsUser {
  nkey: string;
  permissions: NatsPermissions;
}

/** nats-server's `authorization` block (JSON is valid nats-server config). */
export interface NatsAuthorization {
  users: NatsUser[];
}

const KV_STATE_STREAM = `KV_${STATE_BUCKET}`;
const KV_LEASE_STREAM = `KV_${LEASE_BUCKET}`;

export function coordinatorPermissions(publicKey: string): NatsPermissions {
  return {
    // Every pgfed bucket (state, leases, coordinators' API adverts) and the whole JetStream API: coordinators create them.
    publish: { allow: [`${SUBJECT_ROOT}.>`, "$JS.API.>", "$KV.>", "$JS.ACK.>"] },
    subscribe: { allow: [`${inboxPrefixFor(publicKey)}.>`] },
  };
}

export function agentPermissions(grant: AgentGrant): NatsPermissions {
  const feds = [...new Set(grant.members.map((m) => m.federation))].sort();
  const publish = new Set<string>([
    `${SUBJECT_ROOT}.dlq.>`,
    "$JS.API.INFO",
    `$JS.API.STREAM.INFO.${STREAM_NAME}`,
    // KV reads and watches (federation records, leases): the bucket streams' info, direct and plain gets, ordered consumers.
    ...[KV_STATE_STREAM, KV_LEASE_STREAM].flatMap((s) => [
      `$JS.API.STREAM.INFO.${s}`,
      `$JS.API.DIRECT.GET.${s}.>`,
      `$JS.API.STREAM.MSG.GET.${s}`,
      `$JS.API.CONSUMER.CREATE.${s}.>`,
      `$JS.API.CONSUMER.MSG.NEXT.${s}.>`,
      `$JS.API.CONSUMER.DELETE.${s}.>`,
      `$JS.API.CONSUMER.INFO.${s}.>`,
    ]),
  ]);
  for (const fed of feds) {
    publish.add(subjects.heartbeat(fed, grant.region));
    // The one exception to "agents publish only their members' observations, samples, results and heartbeats": the audit
    // records of fences the agent applies itself (lease self-fence, start-up sweep; agent/fence-reports.ts), which must
    // be recorded while no coordinator leads. A leaked agent identity can therefore add records to the trails of the
    // federations it serves (with its own source), never command anything.
    publish.add(subjects.audit(fed));
    publish.add(`$KV.${LEASE_BUCKET}.${leaseKeys.primary(fed)}`);
  }
  for (const { federation, member } of grant.members) {
    publish.add(subjects.obs(federation, member));
    publish.add(subjects.lag(federation, member));
    publish.add(subjects.res(federation, member));
    publish.add(`$KV.${STATE_BUCKET}.${federation}.reclone.${member}`);
    const durable = agentConsumerName(grant.agentId, federation, member);
    publish.add(`$JS.API.CONSUMER.CREATE.${STREAM_NAME}.${durable}.${subjects.cmd(federation, member)}`);
    publish.add(`$JS.API.CONSUMER.INFO.${STREAM_NAME}.${durable}`);
    publish.add(`$JS.API.CONSUMER.MSG.NEXT.${STREAM_NAME}.${durable}`);
    publish.add(`$JS.ACK.${STREAM_NAME}.${durable}.>`);
  }
  return { publish: { allow: [...publish] }, subscribe: { allow: [`${inboxPrefixFor(grant.publicKey)}.>`] } };
}

/** The whole `authorization` block: coordinators first, then agents, one user per key. */
export function natsAuthorization(spec: AuthorizationSpec): NatsAuthorization {
  return {
    users: [
      ...spec.coordinators.map((nkey) => ({ nkey, permissions: coordinatorPermissions(nkey) })),
      ...spec.agents.map((a) => ({ nkey: a.publicKey, permissions: agentPermissions(a) })),
    ],
  };
}
