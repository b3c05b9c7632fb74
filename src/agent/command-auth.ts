/**
 * Is this command from the coordinator that leads? (identity.ts, command-proof.ts). The agent
 * executes a command only when all of these hold, checked in this order:
 *
 *   1. it carries a proof (`unsigned` otherwise);
 *   2. the signer is one of `bus.coordinatorKeys` (`untrusted_signer`);
 *   3. the signature covers the envelope as received (`bad_signature`: forged or altered);
 *   4. the coordinator lease names the signer as its holder (`not_lease_holder`): a coordinator
 *      key that does not lead (a follower, a replaced leader, a stolen seed of a standby) cannot
 *      command. A command from a leader that was replaced meanwhile is refused too; the new
 *      leader re-sends every step with a new command id, so nothing waits on it.
 *
 * Replays: a re-published copy has the same id, so JetStream stores it once within its duplicate
 * window (2 min); later, its deadline has passed (commands live for seconds); the agent answers a
 * repeated id from its result cache without acting again; and stale epochs are refused (rule 1).
 *
 * With no coordinator keys configured (`bus.coordinatorKeys` empty: tests, a development NATS)
 * commands are not checked, and the agent says so at start.
 */
import { leaseKeys, proofVerifies, type LeaseStore, type MessageOf } from "../bus/index.js";

export type RejectionReason = "unsigned" | "untrusted_signer" | "bad_signature" | "not_lease_holder";

export type CommandVerdict = { ok: true } | { ok: false; reason: RejectionReason; message: string };

export class CommandAuthenticator {
  private readonly trusted: ReadonlySet<string>;

  constructor(
    trustedKeys: readonly string[],
    private readonly leases: LeaseStore,
  ) {
    this.trusted = new Set(trustedKeys);
  }

  /** True when commands are checked (coordinator keys are configured). */
  get enforcing(): boolean {
    return this.trusted.size > 0;
  }

  /** Reads the coordinator lease (one KV get) for check 4; throws when KV does not answer, so the bus redelivers. */
  async verify(msg: MessageOf<"command">, what: string): Promise<CommandVerdict> {
    if (!this.enforcing) return { ok: true };
    const proof = msg.proof;
    if (!proof) return { ok: false, reason: "unsigned", message: `refusing ${what}: command ${msg.id} from ${msg.source} carries no signature, and this agent executes only commands signed by a coordinator key` };
    if (!this.trusted.has(proof.signer)) {
      return { ok: false, reason: "untrusted_signer", message: `refusing ${what}: command ${msg.id} is signed by ${proof.signer}, which is not one of the ${this.trusted.size} coordinator key(s) in bus.coordinatorKeys` };
    }
    if (!proofVerifies(msg, proof)) {
      return { ok: false, reason: "bad_signature", message: `refusing ${what}: the signature of command ${msg.id} by ${proof.signer} does not match its content (forged or altered)` };
    }
    const lease = await this.leases.read(leaseKeys.coordinator);
    if (!lease || lease.lease.holderKey !== proof.signer) {
      const holder = lease ? `${lease.lease.holder} (term ${lease.lease.term}${lease.lease.holderKey ? `, key ${lease.lease.holderKey}` : ", no key"})` : "nobody";
      return { ok: false, reason: "not_lease_holder", message: `refusing ${what}: command ${msg.id} is signed by ${proof.signer}, but the coordinator lease is held by ${holder}` };
    }
    // An expired lease nobody took yet still names the last leader: its commands stand until another coordinator leads.
    return { ok: true };
  }
}
