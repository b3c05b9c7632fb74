/**
 * Real Alertmanager (0.25, Debian's prometheus-alertmanager) and Prometheus (2.42) for tests and
 * the lab: started on 127.0.0.1 with free ports, their logs in `dir`, stopped by PID.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, spawnManaged, waitFor, type ManagedProcess } from "./proc.js";

export const ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager";
export const PROMETHEUS_BIN = "/usr/bin/prometheus";

export interface MonitoringServer {
  url: string;
  port: number;
  process: ManagedProcess;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves once the process is gone. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface AlertmanagerOptions {
  /** Working directory: config, storage, log. */
  dir: string;
  /** Every alert goes to this webhook receiver (resolved ones too). */
  webhookUrl: string;
  groupWait?: string;
  groupInterval?: string;
  groupBy?: readonly string[];
}

export async function startAlertmanager(opts: AlertmanagerOptions): Promise<MonitoringServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const config = join(opts.dir, "alertmanager.yml");
  writeFileSync(
    config,
    [
      "route:",
      "  receiver: hook",
      `  group_by: [${(opts.groupBy ?? ["alertname", "federation"]).join(", ")}]`,
      `  group_wait: ${opts.groupWait ?? "1s"}`,
      `  group_interval: ${opts.groupInterval ?? "1s"}`,
      "  repeat_interval: 1h",
      "receivers:",
      "  - name: hook",
      "    webhook_configs:",
      `      - url: ${opts.webhookUrl}`,
      "        send_resolved: true",
      "",
    ].join("\n"),
  );
  const proc = spawnManaged(
    ALERTMANAGER_BIN,
    [`--config.file=${config}`, `--storage.path=${join(opts.dir, "am-data")}`, `--web.listen-address=127.0.0.1:${port}`, "--cluster.listen-address=", "--log.level=warn"],
    { name: "alertmanager", logFile: join(opts.dir, "alertmanager.log") },
  );
  return ready(proc, url, port, 20_000);
}

export interface PrometheusOptions {
  dir: string;
  /** Rule files (absolute paths). */
  ruleFiles: readonly string[];
  /** host:port targets of the `pgfed` scrape job. */
  targets: readonly string[];
  /** Alertmanager base URL alerts are sent to. */
  alertmanagerUrl?: string;
  /** Scrape and evaluation interval (default 1s). */
  interval?: string;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<MonitoringServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const interval = opts.interval ?? "1s";
  const config = join(opts.dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      `global: { scrape_interval: ${interval}, evaluation_interval: ${interval} }`,
      `rule_files: [${opts.ruleFiles.map((f) => JSON.stringify(f)).join(", ")}]`,
      ...(opts.alertmanagerUrl ? ["alerting:", "  alertmanagers:", `    - static_configs: [{ targets: [${JSON.stringify(new URL(opts.alertmanagerUrl).host)}] }]`] : []),
      "scrape_configs:",
      "  - job_name: pgfed",
      `    static_configs: [{ targets: [${opts.targets.map((t) => JSON.stringify(t)).join(", ")}] }]`,
      "",
    ].join("\n"),
  );
  const proc = spawnManaged(
    PROMETHEUS_BIN,
    [`--config.file=${config}`, `--storage.tsdb.path=${join(opts.dir, "prom-data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { name: "prometheus", logFile: join(opts.dir, "prometheus.log") },
  );
  return ready(proc, url, port, 30_000);
}

async function ready(proc: ManagedProcess, url: string, port: number, timeoutMs: number): Promise<MonitoringServer> {
  const stop = async (t = 5_000): Promise<void> => {
    await proc.stop("SIGTERM", t);
  };
  try {
    await waitFor(`${proc.name} ready on ${url}`, async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true, timeoutMs, 100);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, port, process: proc, stop };
}
