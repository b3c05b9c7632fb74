/**
 * The lab's control plane: one agent per lab region and a coordinator, in-process, each with its
 * own NATS connection so that tests can cut one of them off (closing its connection looks like a
 * partition from the bus while its Postgres keeps serving) or crash the coordinator.
 */
import { connectBus, openLeases, type Bus } from "../bus/index.js";
import { agentMembersFromConfig, startAgent, type Agent } from "../agent/agent.js";
import type { Config } from "../config.js";
import { startCoordinator, type Coordinator } from "../coordinator/index.js";
import type { AlertingOptions } from "../coordinator/alerting.js";
import { errorMessage } from "../errors.js";
import { RegionClient } from "../kube/region.js";
import { silentLogger, type Logger } from "../log.js";
import type { Lab } from "./lab.js";

export interface ControlPlaneOptions {
  log?: Logger;
  /** Defaults to lab.config; tests override e.g. the RPO budget. */
  config?: Config;
  coordinatorLeaseTtlMs?: number;
  agentHeartbeatMs?: number;
  /** The coordinator's alerting settings (e.g. short hysteresis in tests); targets come from config.alerts. */
  alerting?: AlertingOptions;
}

interface AgentSlot {
  agent: Agent;
  bus: Bus;
}

export interface ControlPlane {
  readonly coordinator: Coordinator;
  readonly agents: ReadonlyMap<string, Agent>;
  readonly config: Config;
  /** Stops the agent of `region` and closes its bus connection. */
  stopAgent(region: string): Promise<void>;
  /** (Re)starts the agent of `region`; resolves once it started, i.e. after its fence sweep (agent.ts). */
  startAgent(region: string): Promise<void>;
  /** Closes the agent's bus connection while the agent keeps running (its Postgres keeps serving). */
  partitionAgentFromBus(region: string): Promise<void>;
  /** Stops the coordinator as a crash would: no release of its lease, its connection closed. */
  killCoordinator(): Promise<void>;
  startCoordinator(): Promise<Coordinator>;
  /** `host:port` of the NATS server the coordinator's connection uses now, if connected. */
  coordinatorNatsServer(): string | undefined;
  info(): Record<string, string>;
  stop(): Promise<void>;
}

export async function startControlPlane(lab: Lab, opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? silentLogger();
  const config = opts.config ?? lab.config;
  const agents = new Map<string, AgentSlot>();
  let coordinator: { c: Coordinator; bus: Bus } | undefined;
  let coordinatorCount = 0;

  // Each process its own NATS identity, as in a deployment (the lab's server refuses anyone else).
  const connect = (name: string, who: string, n = 1) => {
    const { tls, identity } = lab.busConnection(who, n);
    return connectBus({ servers: config.bus.servers, name, log, publishTimeoutMs: 10_000, tls, identity, manageStream: who === "coordinator", stream: { replicas: config.bus.replicas } });
  };

  const regionClient = (region: string): RegionClient => {
    const regionCfg = config.regions.find((r) => r.name === region);
    return new RegionClient({
      region,
      ...(regionCfg?.kubeconfig.path ? { kubeconfigPath: regionCfg.kubeconfig.path } : { kubeconfigPath: lab.agentKubeconfigPath }),
      context: regionCfg?.kubeconfig.context ?? region,
      log,
    });
  };
  // The coordinator's own identity per region (ServiceAccount pgfed-coordinator), as `--regions-kubeconfig` gives a deployment.
  const coordinatorRegionClient = (region: string): RegionClient => new RegionClient({ region, kubeconfigPath: lab.coordinatorKubeconfigPath, context: region, log });

  const launchAgent = async (region: string): Promise<void> => {
    const bus = await connect(`pgfed-agent-${region}`, region);
    try {
      const kube = regionClient(region);
      const leases = await openLeases(bus);
      const agent = await startAgent({
        agentId: region,
        region,
        kube,
        bus,
        leases,
        members: agentMembersFromConfig(config, region),
        coordinatorKeys: config.bus.coordinatorKeys,
        log,
        ...(opts.agentHeartbeatMs !== undefined ? { heartbeatIntervalMs: opts.agentHeartbeatMs } : {}),
      });
      agents.set(region, { agent, bus });
    } catch (e) {
      await bus.close().catch(() => undefined);
      throw e;
    }
  };

  const launchCoordinator = async (): Promise<Coordinator> => {
    coordinatorCount++;
    const bus = await connect(`pgfed-coordinator-lab${coordinatorCount}`, "coordinator", coordinatorCount);
    try {
      // The coordinator's own client per region, as a deployment gives it a kubeconfig for each (corroboration of a silent primary).
      const regionKube = new Map([...lab.regions.keys()].map((region) => [region, coordinatorRegionClient(region)]));
      const c = await startCoordinator({ config, bus, log, id: `lab${coordinatorCount}`, leaseTtlMs: opts.coordinatorLeaseTtlMs ?? (lab.nats.sites.length > 1 ? 12_000 : 3_000), regionKube, ...(opts.alerting ? { alerting: opts.alerting } : {}) });
      coordinator = { c, bus };
      return c;
    } catch (e) {
      await bus.close().catch(() => undefined);
      throw e;
    }
  };

  const stopAgent = async (region: string): Promise<void> => {
    const slot = agents.get(region);
    if (!slot) return;
    agents.delete(region);
    await slot.agent.stop().catch((e: unknown) => log.warn(`stopping the agent of ${region}: ${errorMessage(e)}`));
    await slot.bus.close().catch(() => undefined);
  };

  try {
    for (const region of lab.regions.keys()) await launchAgent(region);
    await launchCoordinator();
  } catch (e) {
    for (const region of [...agents.keys()]) await stopAgent(region);
    throw e;
  }

  const plane: ControlPlane = {
    get coordinator(): Coordinator {
      if (!coordinator) throw new Error("the lab coordinator is not running (killed and not restarted)");
      return coordinator.c;
    },
    get agents(): ReadonlyMap<string, Agent> {
      return new Map([...agents].map(([k, v]) => [k, v.agent]));
    },
    config,
    stopAgent,
    startAgent: async (region) => {
      await stopAgent(region);
      await launchAgent(region);
    },
    partitionAgentFromBus: async (region) => {
      const slot = agents.get(region);
      if (slot) await slot.bus.close().catch(() => undefined);
    },
    killCoordinator: async () => {
      const cur = coordinator;
      coordinator = undefined;
      if (!cur) return;
      await cur.c.stop({ crash: true });
      await cur.bus.close().catch(() => undefined);
    },
    startCoordinator: async () => {
      if (coordinator) return coordinator.c;
      return launchCoordinator();
    },
    coordinatorNatsServer: () => (coordinator?.bus.connected ? coordinator.bus.nc.getServer() : undefined),
    info: () => ({
      coordinator: coordinator ? `${coordinator.c.id} (${coordinator.c.isLeader() ? "leader" : "follower"})` : "stopped",
      agents: [...agents.keys()].join(", "),
    }),
    stop: async () => {
      const cur = coordinator;
      coordinator = undefined;
      if (cur) {
        await cur.c.stop();
        await cur.bus.close().catch(() => undefined);
      }
      for (const region of [...agents.keys()]) await stopAgent(region);
    },
  };
  return plane;
}
