/**
 * A federation's DR runbook rendered from live state (the API's federation view) and config:
 * topology, today's exposure and decision rules with their numbers, the exact commands, what
 * pgfed does by itself and what needs a person, how to verify each step on the CNPG Clusters, and
 * where traffic must go. One document model, rendered as Markdown or as a standalone HTML page
 * (every piece of text escaped). `pgfed runbook` (runbook.ts) prints it; the API serves it to the
 * status page (GET /v1/federations/{name}/runbook) through the renderer the wiring gives it
 * (`renderRunbook` below, ApiServerOptions.renderRunbook): the API room does not import the alerts.
 */
import { ALERTS, ALERT_NAMES } from "../alerts/catalog.js";
import type { FederationConfig } from "../config.js";
import type { FederationView, MemberView } from "../api/contract.js";
import { formatDurationMs } from "../duration.js";

/** Text with `inline code` in backticks. */
type Block = { p: string } | { list: string[] } | { code: string } | { table: string[][] };
export interface RunbookSection {
  title: string;
  blocks: Block[];
}
export interface RunbookDocument {
  title: string;
  subtitle: string;
  sections: RunbookSection[];
}

export interface RunbookRules {
  budgetMs: number;
  warnAt: number;
  mode: "automatic" | "manual";
  leaseTtlMs: number;
  clockSkewMarginMs: number;
  /** Where leaseTtl/clockSkewMargin came from: the API's federation view, or a --config file. */
  source: string;
}

export interface RunbookInput {
  federation: FederationView;
  rules: RunbookRules;
  server: string;
  generatedAt: Date;
}

const sec = (s: number | null | undefined): string => (s === null || s === undefined ? "unknown" : formatDurationMs(s * 1000));
const ms = (v: number): string => formatDurationMs(v);
const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

export function rulesFrom(f: FederationView, cfg: FederationConfig | undefined, source: string): RunbookRules {
  return {
    budgetMs: f.rpo.budgetSeconds * 1000,
    warnAt: f.rpo.warnAt,
    mode: f.mode,
    leaseTtlMs: cfg?.failover.leaseTtl ?? f.failover.leaseTtlSeconds * 1000,
    clockSkewMarginMs: cfg?.failover.clockSkewMargin ?? f.failover.clockSkewMarginSeconds * 1000,
    source: cfg ? source : "the coordinator's configuration, as its API reports it",
  };
}

function kubectl(m: MemberView, args: string): string {
  return `kubectl --context ${m.region} get clusters.postgresql.cnpg.io ${m.cluster} -n ${m.namespace} ${args}`;
}

function verifyCommands(m: MemberView): string {
  return [
    `# ${m.name} (${m.region}): phase, role in the topology and whom it follows, timeline, tokens`,
    kubectl(m, `-o jsonpath='{.status.phase}{"\\n"}'`),
    kubectl(m, `-o jsonpath='{.spec.replica.primary} {.spec.replica.source}{"\\n"}'`),
    kubectl(m, `-o jsonpath='{.status.timelineID}{"\\n"}'`),
    kubectl(m, `-o jsonpath='{.status.demotionToken}{"\\n"}'`),
    kubectl(m, `-o jsonpath='{.status.lastPromotionToken}{"\\n"}'`),
    `kubectl --context ${m.region} -n ${m.namespace} exec "$(${kubectl(m, "-o jsonpath='{.status.currentPrimary}'")})" -- psql -Atc 'select pg_is_in_recovery()'`,
  ].join("\n");
}

export function runbookDocument(input: RunbookInput): RunbookDocument {
  const { federation: f, rules: r } = input;
  const name = f.name;
  const primary = f.members.find((m) => m.name === f.designatedPrimary);
  const replicas = f.members.filter((m) => m.name !== f.designatedPrimary);
  // A replica that does not follow the primary cannot be promoted with the token: never the suggested target while another follows.
  const eligible = replicas.filter((m) => !m.diverged && m.following !== false);
  const best = [...(eligible.length > 0 ? eligible : replicas)].sort((a, b) => (a.lossIfPromotedSeconds ?? Infinity) - (b.lossIfPromotedSeconds ?? Infinity))[0];
  const target = best?.name ?? "<member>";
  const budgetS = r.budgetMs / 1000;
  const presumedGoneMs = r.leaseTtlMs + r.clockSkewMarginMs;
  const exp = f.exposure;

  const sections: RunbookSection[] = [];
  sections.push({
    title: "Topology",
    blocks: [
      { p: `Epoch ${f.epoch}. Designated primary: \`${f.designatedPrimary ?? "none"}\`${primary ? ` in region \`${primary.region}\`` : ""}. Automatic failover: ${f.mode}${f.paused ? " (PAUSED: pgfed takes no automatic action)" : ""}.` },
      {
        table: [
          ["member", "region (kube context)", "namespace", "CNPG Cluster", "role", "state", "phase", "timeline", "write service"],
          ...f.members.map((m) => [m.name, m.region, m.namespace, m.cluster, m.role, m.state + (m.fenced ? ", fenced" : "") + (m.diverged ? ", diverged" : ""), m.phase, m.timeline === null ? "-" : String(m.timeline), `${m.cluster}-rw`]),
        ],
      },
    ],
  });

  const perReplica = replicas.map((m) => {
    const loss = m.lossIfPromotedSeconds;
    const within = loss !== null && loss <= budgetS;
    const following = m.following === false ? ` (NOT FOLLOWING the primary: ${m.notFollowing ?? "no reason recorded"}; a switchover to it is refused)` : "";
    return `\`${m.name}\`: lag ${sec(m.lagSeconds)}, loss if promoted now ${sec(loss)}: ${within ? "within the budget, automatic failover allowed" : "beyond the budget, failover needs a person to accept the loss"}${following}`;
  });
  sections.push({
    title: "Exposure and decision rules (today's numbers)",
    blocks: [
      {
        p: exp
          ? `Exposure now: ${sec(exp.seconds)} (${exp.bytes} bytes), worst case ${sec(exp.worstCaseSeconds)}, level ${exp.level}; safe position from ${exp.safeSource}${exp.sampledAt ? `, sampled ${exp.sampledAt}` : ""}.`
          : "Exposure now: unknown (no sample from the primary).",
      },
      {
        list: [
          `RPO budget ${ms(r.budgetMs)}; warning at ${Math.round(r.warnAt * 100)}% = ${ms(r.budgetMs * r.warnAt)}; page at the budget.`,
          `A silent primary is presumed gone after its lease TTL ${ms(r.leaseTtlMs)} + clock-skew margin ${ms(r.clockSkewMarginMs)} = ${ms(presumedGoneMs)}, unless it is confirmed fenced earlier (source: ${r.source}).`,
          r.mode === "automatic"
            ? `Failover mode automatic: pgfed promotes the replica with the least loss when the primary is presumed gone and the worst-case loss is within ${ms(r.budgetMs)}; beyond that it waits for approval.`
            : "Failover mode manual: pgfed never promotes by itself; a person runs the failover command below.",
          "A planned switchover is refused to a target that lags more than the budget, and loses nothing: the target is promoted only with the old primary's demotion token.",
          ...perReplica,
          `Last decision: ${f.lastDecision}`,
        ],
      },
    ],
  });

  sections.push({
    title: "What pgfed does by itself, and what needs a person",
    blocks: [
      {
        list: [
          "Automatic: measure exposure and lag, raise alerts, force a WAL switch when un-archived WAL gets old, fence a primary that lost its lease (its agent does), " +
            (r.mode === "automatic" ? "fail over within the budget, " : "") +
            "drive every step of a switchover/failover/rejoin once asked, resume after a coordinator restart.",
          "A person: ask for a planned switchover; approve a failover beyond the budget (`pgfed approve <op> --accept-data-loss <duration>`); rejoin a former primary after a failover (its diverged data is discarded); move traffic (DNS/global load balancer); anything in `operatorRequired` (fix the Clusters, then `pgfed resolve <federation> --primary <member>`).",
        ],
      },
    ],
  });

  const plannedVerify = [primary, best].filter((m): m is MemberView => m !== undefined);
  sections.push({
    title: "Planned switchover",
    blocks: [
      { p: `Move the primary to \`${target}\` with zero data loss. Look at the plan first; nothing changes:` },
      { code: `pgfed switchover ${name} --to ${target} --dry-run\npgfed switchover ${name} --to ${target} --reason ${q("planned maintenance")} --yes` },
      { p: `pgfed demotes \`${f.designatedPrimary ?? "<primary>"}\` (CNPG writes \`status.demotionToken\`), waits until \`${target}\` has replayed up to it, then promotes \`${target}\` with that token. Verify each step:` },
      { code: plannedVerify.map(verifyCommands).join("\n\n") },
      {
        p: `Done when \`${target}\` reports \`spec.replica.primary\` = \`${target}\`, phase \`Cluster in healthy state\`, a \`status.timelineID\` one above the old primary's and \`pg_is_in_recovery()\` = \`f\`; every other member names \`${target}\` as primary and source and answers \`t\`. (\`status.lastPromotionToken\` equals the old primary's \`demotionToken\` only until pgfed removes the used token from the spec: CNPG then empties both.)`,
      },
    ],
  });

  sections.push({
    title: "Unplanned failover (the primary's region is lost)",
    blocks: [
      { p: `${r.mode === "automatic" ? `pgfed fails over by itself after ${ms(presumedGoneMs)} when the loss is within ${ms(r.budgetMs)}. ` : ""}To do it by hand, or when pgfed waits for approval:` },
      {
        code: [
          `pgfed status ${name}`,
          `pgfed failover ${name} --to ${target} --dry-run`,
          `pgfed failover ${name} --to ${target} --reason ${q("region lost")} --yes`,
          `# beyond the budget: accept the loss shown by the dry run (worst case now ${sec(best?.lossIfPromotedSeconds)})`,
          `pgfed failover ${name} --to ${target} --accept-data-loss ${Math.ceil(Math.max(best?.lossIfPromotedSeconds ?? budgetS, 1))}s --yes`,
          `pgfed approve <operation-id> --accept-data-loss <duration>`,
        ].join("\n"),
      },
      { p: "Verify the new primary:" },
      { code: best ? verifyCommands(best) : "# no replica" },
      { p: "The old primary cannot be fenced by CNPG while its region is away: when the region returns, pgfed fences it and marks it diverged. Do not point it at the new primary by hand." },
    ],
  });

  sections.push({
    title: "Rejoin a former primary",
    blocks: [
      { p: "After a failover the old primary has diverged and must be re-cloned as a replica of the new primary:" },
      { code: [`pgfed rejoin ${name} ${f.designatedPrimary ?? "<member>"} --dry-run`, `pgfed rejoin ${name} ${f.designatedPrimary ?? "<member>"} --yes`, ...(f.diverged.length ? [`# diverged now: ${f.diverged.join(", ")}`] : [])].join("\n") },
      { p: "Verify it follows the new primary (`spec.replica.primary` names the new primary, `pg_is_in_recovery()` = `t`):" },
      { code: primary ? verifyCommands(primary) : "# no primary" },
    ],
  });

  sections.push({
    title: "Moving traffic",
    blocks: [
      {
        p: `Applications must write to the \`<cluster>-rw\` service of the new primary, in its region: now \`${primary ? `${primary.cluster}-rw.${primary.namespace}.svc` : "-"}\` in \`${primary?.region ?? "-"}\`; after a switchover to \`${target}\` it is \`${best ? `${best.cluster}-rw.${best.namespace}.svc` : "-"}\` in \`${best?.region ?? "-"}\`. DNS or the global load balancer in front of the regions is outside CNPG and outside pgfed: update it once the new primary is verified.`,
      },
    ],
  });

  sections.push({
    title: "Follow and audit",
    blocks: [
      { code: [`pgfed status ${name}`, `pgfed audit ${name} --since 1h`, `curl -H "Authorization: Bearer $PGFED_TOKEN" ${input.server}/v1/federations/${name}`].join("\n") },
      {
        table: [
          ["alert", "severity", "first command"],
          ...ALERT_NAMES.map((n) => [n, ALERTS[n].severity, ALERTS[n].command.replace(/\{federation\}/g, name).replace(/\{[a-z]+\|([^}]*)\}/g, "$1")]),
        ],
      },
    ],
  });

  return {
    title: `DR runbook: federation ${name}`,
    subtitle: `Generated ${input.generatedAt.toISOString()} from ${input.server} (epoch ${f.epoch}). Numbers are today's; regenerate with \`pgfed runbook ${name}\`.`,
    sections,
  };
}

// ---------- Markdown ----------

function mdCell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function renderMarkdown(doc: RunbookDocument): string {
  const out = [`# ${doc.title}`, "", doc.subtitle, ""];
  for (const s of doc.sections) {
    out.push(`## ${s.title}`, "");
    for (const b of s.blocks) {
      if ("p" in b) out.push(b.p, "");
      else if ("list" in b) out.push(...b.list.map((l) => `- ${l}`), "");
      else if ("code" in b) out.push("```sh", b.code, "```", "");
      else {
        const [head, ...rows] = b.table;
        if (!head) continue;
        out.push(`| ${head.map(mdCell).join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(mdCell).join(" | ")} |`), "");
      }
    }
  }
  return out.join("\n");
}

// ---------- HTML ----------

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** Escapes, then turns `code` spans into <code> (backticks survive escaping unchanged). */
function inline(s: string): string {
  return escapeHtml(s).replace(/`([^`]+)`/g, "<code>$1</code>");
}

export function renderHtml(doc: RunbookDocument): string {
  const body: string[] = [`<h1>${escapeHtml(doc.title)}</h1>`, `<p class="sub">${inline(doc.subtitle)}</p>`];
  for (const s of doc.sections) {
    body.push(`<h2>${escapeHtml(s.title)}</h2>`);
    for (const b of s.blocks) {
      if ("p" in b) body.push(`<p>${inline(b.p)}</p>`);
      else if ("list" in b) body.push(`<ul>${b.list.map((l) => `<li>${inline(l)}</li>`).join("")}</ul>`);
      else if ("code" in b) body.push(`<pre><code>${escapeHtml(b.code)}</code></pre>`);
      else {
        const [head, ...rows] = b.table;
        if (!head) continue;
        body.push(`<table><thead><tr>${head.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`);
      }
    }
  }
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(doc.title)}</title>
<style>
body { font: 11pt/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #111; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 1.8rem; border-bottom: 1px solid #ccc; }
.sub { color: #555; }
pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
code { font: .92em ui-monospace, monospace; }
table { border-collapse: collapse; font-size: .9em; } th, td { border: 1px solid #bbb; padding: .2rem .4rem; text-align: left; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } pre, table { break-inside: avoid; } }
</style>
</head>
<body>
${body.join("\n")}
</body>
</html>
`;
}

/** The API's runbook renderer (ApiServerOptions.renderRunbook), wired by `pgfed run` and the lab. */
export function renderRunbook(federation: FederationView, format: "markdown" | "html", server: string): string {
  const doc = runbookDocument({ federation, rules: rulesFrom(federation, undefined, ""), server, generatedAt: new Date() });
  return format === "html" ? renderHtml(doc) : renderMarkdown(doc);
}
