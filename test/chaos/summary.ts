/** The summary table of chaos runs (README "Reliability" quotes it). */
import type { ChaosReport } from "./chaos.js";

export function summaryTable(reports: readonly ChaosReport[]): string {
  const head = ["seed", "topology", "faults (by kind)", "ops done/aborted/refused/person", "rows acked/lost/in doubt", "max exposure / budget", "two writable", "violations", "time"];
  const rows = reports.map((r) => [
    String(r.seed),
    `${r.topology.regions} regions, ${r.topology.streaming ? "streaming" : "archive-only"}`,
    Object.entries(r.faults)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(", ") || "none",
    `${r.operations.completed}/${r.operations.aborted}/${r.operations.refused}/${r.operations.awaitingPerson}`,
    `${r.rows.acknowledged}/${r.rows.lost}/${r.rows.inDoubt}`,
    `${r.maxExposureSeconds.toFixed(1)} s / ${r.budgetSeconds} s`,
    String(r.twoWritableMoments),
    r.violations.length === 0 ? "none" : r.violations.map((v) => `#${v.invariant}`).join(" "),
    `${r.durationSeconds} s`,
  ]);
  const total = reports.reduce((n, r) => n + Object.values(r.faults).reduce((a, b) => a + b, 0), 0);
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((c) => `| ${c.join(" | ")} |`)];
  lines.push("", `${reports.length} run(s), ${total} fault(s) injected, ${reports.reduce((n, r) => n + r.episodes.length, 0)} episode(s), ${reports.reduce((n, r) => n + r.violations.length, 0)} invariant violation(s)`);
  return lines.join("\n");
}
