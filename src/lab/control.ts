/**
 * The running lab's control endpoint: `pgfed lab status|kill-region|partition-region|
 * restore-region|stop` from another terminal talk to it over HTTP on 127.0.0.1. Its address is in
 * `<dir>/lab.json`, written when the lab is ready and removed when it stops.
 */
import { createServer, type Server } from "node:http";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage, PgfedError } from "../errors.js";
import type { Lab, LabMemberStatus } from "./lab.js";

export const LAB_INFO_FILE = "lab.json";

export interface LabInfo {
  pid: number;
  controlUrl: string;
  kubeconfig: string;
  contexts: string[];
  natsUrl: string;
  /** Extra entries a control plane adds (e.g. the pgfed API URL). */
  extra: Record<string, string>;
  members: { member: string; region: string; psql: string }[];
}

export interface LabControl {
  url: string;
  close(): Promise<void>;
}

type Action = "status" | "kill-region" | "partition-region" | "restore-region" | "stop";
const ACTIONS: readonly Action[] = ["status", "kill-region", "partition-region", "restore-region", "stop"];

/**
 * What happened to a region, for the control plane to follow (a killed region loses its agent too).
 * For restore-region it runs after the region's Kubernetes API is back and before its instance restarts.
 */
export type RegionAction = "kill-region" | "partition-region" | "restore-region";

export async function startLabControl(
  lab: Lab,
  onStop: () => void,
  extra: () => Record<string, string> = () => ({}),
  onRegion: (action: RegionAction, region: string) => Promise<void> = async () => undefined,
): Promise<LabControl> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const action = url.pathname.slice(1) as Action;
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (!ACTIONS.includes(action)) return reply(404, { error: `unknown action "${action}"` });
    const region = url.searchParams.get("region") ?? "";
    const run = async (): Promise<unknown> => {
      switch (action) {
        case "status":
          return { members: await lab.status(), extra: extra() };
        case "kill-region":
          await lab.killRegion(region);
          await onRegion(action, region);
          return { done: `region ${region} killed` };
        case "partition-region":
          await lab.partitionRegion(region);
          await onRegion(action, region);
          return { done: `region ${region} partitioned` };
        case "restore-region":
          // The region's agent starts (and fences a former primary) before its Postgres restarts.
          await lab.restoreRegion(region, { beforeInstance: () => onRegion(action, region) });
          return { done: `region ${region} restored` };
        case "stop":
          setImmediate(onStop);
          return { done: "lab stopping" };
      }
    };
    run().then(
      (body) => reply(200, body),
      (e: unknown) => reply(e instanceof PgfedError ? 400 : 500, { error: errorMessage(e) }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  const url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  const info: LabInfo = {
    pid: process.pid,
    controlUrl: url,
    kubeconfig: lab.kubeconfigPath,
    contexts: [...lab.regions.keys()],
    natsUrl: lab.nats.url,
    extra: extra(),
    members: lab.members.map((m) => ({ member: m.name, region: m.region, psql: lab.psql(m.name) })),
  };
  await writeFile(join(lab.dir, LAB_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
  return {
    url,
    close: async () => {
      await rm(join(lab.dir, LAB_INFO_FILE), { force: true });
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function readLabInfo(dir: string): Promise<LabInfo> {
  try {
    return JSON.parse(await readFile(join(dir, LAB_INFO_FILE), "utf8")) as LabInfo;
  } catch {
    throw new PgfedError("lab.not_running", `no lab is running in ${dir} (start one with \`npm run lab\` or \`pgfed lab --dir ${dir}\`)`);
  }
}

/** Sends an action to the running lab and returns its JSON answer. */
export async function callLab(dir: string, action: Action, region?: string): Promise<unknown> {
  const info = await readLabInfo(dir);
  const url = `${info.controlUrl}/${action}${region ? `?region=${encodeURIComponent(region)}` : ""}`;
  let res: Response;
  try {
    res = await fetch(url, { method: action === "status" ? "GET" : "POST", signal: AbortSignal.timeout(60_000) });
  } catch (e) {
    throw new PgfedError("lab.not_running", `the lab in ${dir} does not answer at ${info.controlUrl} (${errorMessage(e)}); if it crashed, the next \`pgfed lab\` cleans up`);
  }
  const body: unknown = await res.json();
  if (!res.ok) {
    const msg = typeof body === "object" && body !== null && "error" in body ? String(body.error) : `HTTP ${res.status}`;
    throw new PgfedError("lab.action_failed", msg);
  }
  return body;
}

export function formatLabStatus(members: LabMemberStatus[]): string {
  const rows = [["MEMBER", "REGION", "ROLE", "TL", "POSTGRES", "REGION STATE", "PHASE"]];
  for (const m of members) rows.push([m.member, m.region, m.role, m.timeline === undefined ? "-" : String(m.timeline), m.running ? "running" : "down", m.condition, m.phase]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")).join("\n") + "\n";
}
