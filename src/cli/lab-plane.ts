/**
 * What `pgfed lab` runs on top of its regions: the control plane (an agent per region and a
 * coordinator) and the HTTP API over that coordinator on 127.0.0.1, with a fresh operator token.
 * The API URL and token go into `<labdir>/lab.json` (`extra.api`, `extra.token`), where the CLI
 * finds them, so the README tour needs no flags.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseTokenFile, tokenLine } from "../api/auth.js";
import { startApiServer } from "../api/server.js";
import { renderRunbook } from "./runbook-document.js";
import { startControlPlane } from "../lab/control-plane.js";
import { createLogger } from "../log.js";
import type { ControlPlaneStarter } from "./lab.js";

export const LAB_TOKENS_FILE = "tokens";

export const labControlPlane: ControlPlaneStarter = async (lab) => {
  // Errors only by default: the lab's terminal shows the banner, and a killed region makes its agent's retries noisy.
  const log = createLogger({ level: process.env.PGFED_LOG_LEVEL ?? "error" });
  const plane = await startControlPlane(lab, { log });
  try {
    const token = randomBytes(32).toString("hex");
    const line = tokenLine("lab", "operator", token);
    // The hash only, like any token file; the token itself is in lab.json for the CLI.
    await writeFile(join(lab.dir, LAB_TOKENS_FILE), `# the lab's operator token (its value is extra.token in lab.json)\n${line}\n`, { mode: 0o600 });
    const coordinator = plane.coordinator;
    const api = await startApiServer({ service: coordinator, listen: "127.0.0.1:0", tokens: parseTokenFile(line, LAB_TOKENS_FILE), log, metricsRegistry: coordinator.metrics.registry, renderRunbook });
    try {
      await coordinator.setApiUrl(api.url);
      await coordinator.waitLeader(30_000);
    } catch (e) {
      await api.close();
      throw e;
    }
    return {
      info: () => ({ ...plane.info(), api: api.url, token }),
      // A killed region takes its agent with it, without releasing the primary lease (so pgfed can
      // fail over once it expires); a partitioned one keeps its agent; a restored one gets it back
      // before its Postgres restarts (lab.restoreRegion): startAgent resolves after the agent's fence sweep.
      regionChanged: async (action, region) => {
        if (action === "kill-region") {
          await plane.partitionAgentFromBus(region);
          await plane.stopAgent(region);
        } else if (action === "restore-region" && !plane.agents.has(region)) {
          await plane.startAgent(region);
        }
      },
      stop: async () => {
        await api.close();
        await plane.stop();
      },
    };
  } catch (e) {
    await plane.stop();
    throw e;
  }
};
