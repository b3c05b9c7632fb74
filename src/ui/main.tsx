/**
 * pgfed's status page: served by the API at `/` (src/api/ui.ts), built by scripts/build.js into
 * dist/ui. Overview of every federation, one federation's members, exposure and lag over the last
 * hour, the operation in flight live, the audit trail and the runbook; a switchover (dry run
 * first, typed confirmation) and the approval of an operation waiting for one. It shows the API's
 * answers, errors in the API's words; it decides nothing itself.
 */
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import type { AuditEntry, FederationHistoryView, FederationView, MemberView, OperationView, PlanView } from "../api/contract.js";
import { ApiProblem, api, followOperation, isFinishedState, token } from "./api.js";

const POLL_MS = 2_000;
const AUDIT_SHOWN = 100;

// ---------- formatting ----------

function fmtSec(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(s / 60)} m ${String(Math.round(s % 60)).padStart(2, "0")} s`;
}

function fmtBytes(b: number | null | undefined): string {
  if (b === null || b === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = b;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i] ?? "B"}`;
}

const when = (iso: string): string => iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
const errorText = (e: unknown): string => (e instanceof ApiProblem ? `${e.message}${e.field ? ` (${e.field})` : ""}` : e instanceof Error ? e.message : String(e));

// ---------- routing (#/ and #/f/<name>) ----------

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

/** Calls `load` now and every POLL_MS; the last answer or error. */
function usePoll<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: string | undefined } {
  const [state, setState] = useState<{ data: T | undefined; error: string | undefined }>({ data: undefined, error: undefined });
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const data = await load();
        if (alive) setState({ data, error: undefined });
      } catch (e) {
        if (alive) setState((s) => ({ data: s.data, error: errorText(e) }));
      }
      if (alive) timer = setTimeout(() => void tick(), POLL_MS);
    };
    void tick();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, deps);
  return state;
}

// ---------- pieces ----------

function Problem({ text }: { text: string | undefined }) {
  return text ? (
    <p class="problem" role="alert">
      {text}
    </p>
  ) : null;
}

/** Exposure against the budget: a bar with the warn mark, and the numbers in words. */
function Gauge({ f }: { f: FederationView }) {
  const budget = f.rpo.budgetSeconds;
  const exp = f.exposure;
  const worst = exp?.worstCaseSeconds ?? null;
  const pct = worst === null ? 0 : Math.min(100, (worst / budget) * 100);
  const level = exp?.level ?? "unknown";
  const label = exp ? `exposure ${fmtSec(exp.seconds)}, worst case ${fmtSec(worst)} of a ${fmtSec(budget)} budget (${level})` : `exposure unknown, budget ${fmtSec(budget)}`;
  return (
    <div class="gauge" role="meter" aria-valuemin={0} aria-valuemax={budget} aria-valuenow={worst ?? 0} aria-label={label} title={label}>
      <div class={`gauge-fill level-${level}`} style={{ width: `${pct}%` }} />
      <div class="gauge-warn" style={{ left: `${f.rpo.warnAt * 100}%` }} />
      <span class="gauge-text">
        {exp ? fmtSec(worst) : "unknown"} / {fmtSec(budget)}
      </span>
    </div>
  );
}

function OperationBadge({ op }: { op: OperationView | null }) {
  if (!op || isFinishedState(op.state)) return <span class="muted">none</span>;
  return (
    <span class={`badge state-${op.state}`}>
      {op.kind} → {op.target ?? "?"} ({op.state}, {op.step})
    </span>
  );
}

function TokenForm({ onToken, problem }: { onToken: () => void; problem?: string | undefined }) {
  const [value, setValue] = useState("");
  return (
    <form
      class="card token"
      onSubmit={(e) => {
        e.preventDefault();
        if (value.trim() === "") return;
        token.set(value.trim());
        onToken();
      }}
    >
      <h2>Sign in</h2>
      <p>
        A read-only token shows the federations; an operator token also allows a switchover and approvals. The token is kept for this browser tab only
        (sessionStorage).
      </p>
      <Problem text={problem} />
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
      <button type="submit">Use this token</button>
    </form>
  );
}

// ---------- overview ----------

function Overview() {
  const { data, error } = usePoll(() => api.federations(), []);
  return (
    <section aria-labelledby="overview-title">
      <h2 id="overview-title">Federations</h2>
      <Problem text={error} />
      {data && (
        <div class="scroll">
          <table class="overview">
            <thead>
              <tr>
                <th scope="col">Federation</th>
                <th scope="col">Primary</th>
                <th scope="col">Epoch</th>
                <th scope="col">Exposure / budget</th>
                <th scope="col">Failover</th>
                <th scope="col">Alerts</th>
                <th scope="col">Operation</th>
              </tr>
            </thead>
            <tbody>
              {data.map((f) => {
                const primary = f.members.find((m) => m.name === f.designatedPrimary);
                return (
                  <tr key={f.name} data-federation={f.name}>
                    <th scope="row">
                      <a href={`#/f/${encodeURIComponent(f.name)}`}>{f.name}</a>
                    </th>
                    <td>{primary ? `${primary.name} (${primary.region})` : <strong class="bad">none</strong>}</td>
                    <td>{f.epoch}</td>
                    <td>
                      <Gauge f={f} />
                    </td>
                    <td>
                      {f.mode}
                      {f.paused ? <strong class="warn"> paused</strong> : null}
                    </td>
                    <td>{f.alerts.length === 0 ? <span class="muted">none</span> : <span class="bad">{f.alerts.map((a) => a.name).join(", ")}</span>}</td>
                    <td>
                      <OperationBadge op={f.operation} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

// ---------- one federation ----------

function Members({ f }: { f: FederationView }) {
  const row = (m: MemberView) => {
    const old = m.observedAgoSeconds !== null && m.observedAgoSeconds > f.failover.leaseTtlSeconds;
    return (
      <tr key={m.name} data-member={m.name}>
        <th scope="row">{m.name}</th>
        <td>{m.region}</td>
        <td>{m.role}</td>
        <td>
          {m.state}
          {m.fenced ? ", fenced" : ""}
          {m.following ? "" : <span class="bad"> (not following: {m.notFollowing})</span>}
        </td>
        <td>{m.phase}</td>
        <td>{m.role === "primary" ? "–" : `${fmtSec(m.lagSeconds)} (${fmtBytes(m.lagBytes)})`}</td>
        <td>{m.role === "primary" ? "–" : fmtSec(m.lossIfPromotedSeconds)}</td>
        <td class={old ? "bad" : ""}>{m.observedAgoSeconds === null ? "never" : `${Math.round(m.observedAgoSeconds)} s ago`}</td>
      </tr>
    );
  };
  return (
    <div class="scroll">
      <table>
        <caption>Members</caption>
        <thead>
          <tr>
            <th scope="col">Member</th>
            <th scope="col">Region</th>
            <th scope="col">Role</th>
            <th scope="col">State</th>
            <th scope="col">Phase</th>
            <th scope="col">Lag</th>
            <th scope="col">Loss if promoted</th>
            <th scope="col">Last report</th>
          </tr>
        </thead>
        <tbody>{f.members.map(row)}</tbody>
      </table>
    </div>
  );
}

/** Exposure and each replica's lag: the coordinator's last hour, then the points this page polled since. */
function Chart({ f }: { f: FederationView }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const series = useRef<{ at: number[]; exposure: (number | null)[]; lag: Map<string, (number | null)[]> } | null>(null);
  const [problem, setProblem] = useState<string | undefined>();
  const members = f.members.map((m) => m.name);

  useEffect(() => {
    let alive = true;
    api
      .history(f.name)
      .then((h: FederationHistoryView) => {
        if (!alive) return;
        series.current = { at: [...h.at], exposure: [...h.exposureSeconds], lag: new Map(h.members.map((m) => [m.name, [...m.lagSeconds]])) };
        draw();
      })
      .catch((e: unknown) => setProblem(errorText(e)));
    // The chart follows its box's width (a rotated phone, a resized window).
    const resize = new ResizeObserver(() => {
      const el = box.current;
      if (el && plot.current) plot.current.setSize({ width: Math.max(240, el.clientWidth), height: 220 });
    });
    if (box.current) resize.observe(box.current);
    return () => {
      alive = false;
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [f.name]);

  // Every poll adds the federation's current figures.
  useEffect(() => {
    const s = series.current;
    if (!s) return;
    s.at.push(Date.now() / 1000);
    s.exposure.push(f.exposure?.seconds ?? null);
    for (const m of f.members) {
      const arr = s.lag.get(m.name) ?? [];
      arr.push(m.role === "primary" ? null : m.lagSeconds);
      s.lag.set(m.name, arr);
    }
    const cutoff = Date.now() / 1000 - 3600;
    while (s.at.length > 0 && (s.at[0] ?? 0) < cutoff) {
      s.at.shift();
      s.exposure.shift();
      for (const arr of s.lag.values()) arr.shift();
    }
    draw();
  }, [f]);

  function draw() {
    const s = series.current;
    const el = box.current;
    if (!s || !el) return;
    const data: uPlot.AlignedData = [s.at, s.at.map(() => f.rpo.budgetSeconds), s.exposure, ...members.map((m) => s.lag.get(m) ?? [])];
    if (plot.current) {
      plot.current.setData(data);
      return;
    }
    const colors = ["#0b5cad", "#b4530e", "#207a3c", "#7a2d8c", "#555"];
    plot.current = new uPlot(
      {
        width: Math.max(240, el.clientWidth),
        height: 220,
        series: [
          {},
          { label: "budget (s)", stroke: "#8a5300", width: 1, dash: [6, 4] },
          { label: "exposure (s)", stroke: "#b00020", width: 2 },
          ...members.map((m, i) => ({ label: `${m} lag (s)`, stroke: colors[i % colors.length], width: 1.5 })),
        ],
        axes: [{}, { label: "seconds" }],
        // From 0 to a little above the budget or the largest value, whichever is higher.
        // A single point in time gets a two-minute window, not uPlot's default of years.
        scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 60, max + 60] : [min, max]) }, y: { range: (_u, _min, max) => [0, Math.max(max, f.rpo.budgetSeconds) * 1.1] } },
      },
      data,
      el,
    );
  }

  return (
    <figure class="chart">
      <figcaption>
        Exposure (budget {fmtSec(f.rpo.budgetSeconds)}) and each replica's lag, last hour
      </figcaption>
      <Problem text={problem} />
      <div ref={box} class="chart-box" />
    </figure>
  );
}

function Steps({ op }: { op: OperationView }) {
  return (
    <div class="operation" data-operation={op.id} aria-live="polite">
      <p>
        <strong>
          {op.kind} {op.from ?? ""} → {op.target ?? "?"}
        </strong>{" "}
        <span class={`badge state-${op.state}`}>{op.state}</span> requested by {op.requestedBy}
        {op.reason ? `: ${op.reason}` : ""}
      </p>
      <ol class="steps">
        {op.steps.map((s) => (
          <li key={`${s.at}${s.step}`} data-step={s.step}>
            <span class="step-name">{s.step}</span> <time>{when(s.at)}</time> — {s.description}
          </li>
        ))}
      </ol>
      <p class="decision">{op.lastDecision}</p>
      {op.durationSeconds !== null ? (
        <p>
          duration {fmtSec(op.durationSeconds)}, data loss {fmtSec(op.dataLossSeconds)}, epoch {op.epochBefore}
          {op.epochAfter !== null && op.epochAfter !== op.epochBefore ? ` → ${op.epochAfter}` : ""}
        </p>
      ) : null}
    </div>
  );
}

/** The operation in flight (or the last one), its steps live over the API's event stream. */
function LiveOperation({ first }: { first: OperationView }) {
  const [op, setOp] = useState(first);
  useEffect(() => {
    setOp(first);
    if (isFinishedState(first.state)) return;
    const ctl = new AbortController();
    followOperation(first.id, setOp, ctl.signal).catch(() => undefined);
    return () => ctl.abort();
  }, [first.id]);
  return <Steps op={op} />;
}

function PlanBox({ plan }: { plan: PlanView }) {
  return (
    <div class={`plan ${plan.allowed ? "allowed" : "refused"}`} data-plan={plan.allowed ? "allowed" : "refused"}>
      <p>
        <strong>
          plan: {plan.kind} {plan.federation}
          {plan.target ? ` → ${plan.target}` : ""}: {plan.allowed ? "allowed" : "REFUSED"}
        </strong>
      </p>
      {plan.refusal ? <p class="bad">{plan.refusal}</p> : null}
      <ul>
        {plan.preconditions.map((c) => (
          <li key={c.name} class={c.ok ? "ok" : "bad"}>
            {c.ok ? "✓" : "✗"} {c.name}: {c.detail}
            {Object.keys(c.numbers).length > 0 ? ` (${Object.entries(c.numbers).map(([k, v]) => `${k}=${v}`).join(", ")})` : ""}
          </li>
        ))}
      </ul>
      <p>
        expected data loss {fmtSec(plan.expectedDataLoss.seconds)} ({fmtBytes(plan.expectedDataLoss.bytes)}), expected duration {fmtSec(plan.expectedDurationSeconds)}.
        Nothing was changed (dry run).
      </p>
    </div>
  );
}

function SwitchoverForm({ f, onStarted }: { f: FederationView; onStarted: (op: OperationView) => void }) {
  const targets = f.members.filter((m) => m.name !== f.designatedPrimary);
  const [target, setTarget] = useState(targets[0]?.name ?? "");
  const [reason, setReason] = useState("");
  const [plan, setPlan] = useState<PlanView | undefined>();
  const [confirm, setConfirm] = useState("");
  const [problem, setProblem] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const reset = () => {
    setPlan(undefined);
    setConfirm("");
  };
  const dryRun = async () => {
    setBusy(true);
    setProblem(undefined);
    try {
      setPlan(await api.switchoverPlan(f.name, target, reason));
    } catch (e) {
      setPlan(undefined);
      setProblem(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  const start = async () => {
    setBusy(true);
    setProblem(undefined);
    try {
      const op = await api.switchover(f.name, target, reason);
      reset();
      onStarted(op);
    } catch (e) {
      setProblem(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card action" aria-labelledby="switchover-title" onSubmit={(e) => e.preventDefault()}>
      <h3 id="switchover-title">Planned switchover</h3>
      <label for="target">Promote</label>
      <select
        id="target"
        value={target}
        onChange={(e) => {
          setTarget((e.target as HTMLSelectElement).value);
          reset();
        }}
      >
        {targets.map((m) => (
          <option key={m.name} value={m.name}>
            {m.name} ({m.region})
          </option>
        ))}
      </select>
      <label for="reason">Reason (recorded in the audit trail)</label>
      <input id="reason" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
      <button type="button" id="dry-run" disabled={busy || target === ""} onClick={() => void dryRun()}>
        Dry run
      </button>
      <Problem text={problem} />
      {plan && <PlanBox plan={plan} />}
      {plan?.allowed && (
        <div class="confirm">
          <label for="confirm">
            Type <code>{f.name}</code> to switch over to {plan.target}
          </label>
          <input id="confirm" autocomplete="off" value={confirm} onInput={(e) => setConfirm((e.target as HTMLInputElement).value)} />
          <button type="button" id="switch-over" class="danger" disabled={busy || confirm !== f.name || reason.trim() === ""} onClick={() => void start()}>
            Switch over to {plan.target}
          </button>
          {reason.trim() === "" ? <p class="muted">A reason is required.</p> : null}
        </div>
      )}
    </form>
  );
}

function ApproveForm({ op }: { op: OperationView }) {
  const [plan, setPlan] = useState<PlanView | undefined>();
  const [accept, setAccept] = useState("");
  const [reason, setReason] = useState("");
  const [problem, setProblem] = useState<string | undefined>();
  const [done, setDone] = useState(false);
  useEffect(() => {
    api
      .approvePlan(op.id, undefined, "status page: loss shown before approval")
      .then((p) => {
        setPlan(p);
        setAccept(`${Math.ceil(p.expectedDataLoss.seconds)}s`);
      })
      .catch((e: unknown) => setProblem(errorText(e)));
  }, [op.id]);
  return (
    <form class="card action" aria-labelledby="approve-title" onSubmit={(e) => e.preventDefault()}>
      <h3 id="approve-title">
        Approve {op.kind} → {op.target ?? plan?.target ?? "?"}
      </h3>
      <p>The operation waits for a person: the dry run of the approval below gives the loss it would accept, with its numbers.</p>
      {plan && <PlanBox plan={plan} />}
      <label for="accept">Data loss you accept (covers the worst case above)</label>
      <input id="accept" value={accept} onInput={(e) => setAccept((e.target as HTMLInputElement).value)} />
      <label for="approve-reason">Reason</label>
      <input id="approve-reason" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
      <button
        type="button"
        class="danger"
        disabled={done || reason.trim() === ""}
        onClick={() => {
          setProblem(undefined);
          api
            .approve(op.id, accept || undefined, reason)
            .then(() => setDone(true))
            .catch((e: unknown) => setProblem(errorText(e)));
        }}
      >
        Approve, accepting {accept || "no"} data loss
      </button>
      <Problem text={problem} />
    </form>
  );
}

function Audit({ data, error }: { data: AuditEntry[] | undefined; error: string | undefined }) {
  const [only, setOnly] = useState("");
  const ops = [...new Set((data ?? []).map((e) => e.operationId).filter((x): x is string => x !== null))];
  const shown = (data ?? []).filter((e: AuditEntry) => only === "" || e.operationId === only);
  return (
    <section aria-labelledby="audit-title">
      <h3 id="audit-title">Audit trail (24 h)</h3>
      <Problem text={error} />
      <label for="audit-op">Operation</label>
      <select id="audit-op" value={only} onChange={(e) => setOnly((e.target as HTMLSelectElement).value)}>
        <option value="">all</option>
        {ops.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
      <p class="muted">
        {shown.length > AUDIT_SHOWN ? `the newest ${AUDIT_SHOWN} of ${shown.length} entries (pgfed audit shows all)` : `${shown.length} entries, newest first`}
      </p>
      <ol class="audit">
        {shown
          .slice(-AUDIT_SHOWN)
          .reverse()
          .map((e, i) => (
            <li key={`${e.at}-${i}`}>
              <time>{when(e.at)}</time> e{e.epoch} <strong>{e.action}</strong> {e.member ?? ""} by {e.actor}: {e.description}
              {e.reason ? ` (reason: ${e.reason})` : ""}
            </li>
          ))}
      </ol>
    </section>
  );
}

function Runbook({ name }: { name: string }) {
  const [html, setHtml] = useState<string | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  return (
    <details
      onToggle={(e) => {
        if ((e.target as HTMLDetailsElement).open && html === undefined)
          api
            .runbookHtml(name)
            .then(setHtml)
            .catch((err: unknown) => setProblem(errorText(err)));
      }}
    >
      <summary>Runbook (from live state)</summary>
      <Problem text={problem} />
      {/* A sandboxed frame: the runbook's own page, no scripts. */}
      {html !== undefined && <iframe class="runbook" title={`runbook of ${name}`} sandbox="" srcdoc={html} />}
    </details>
  );
}

/**
 * The operation to show: the one in flight (from the federation view), else the newest the audit
 * trail names (an operation that started and ended between two polls), fetched once.
 */
function useCurrentOperation(f: FederationView | undefined, audit: AuditEntry[] | undefined, started: OperationView | undefined): OperationView | undefined {
  const [last, setLast] = useState<OperationView | undefined>();
  const inFlight = f?.operation ?? undefined;
  const newestId = [...(audit ?? [])].reverse().find((e) => e.operationId !== null)?.operationId ?? undefined;
  useEffect(() => {
    if (inFlight) setLast(inFlight);
  }, [inFlight?.id, inFlight?.state, inFlight?.steps.length]);
  // Out of flight: its final view, once.
  useEffect(() => {
    if (inFlight || !last || isFinishedState(last.state)) return;
    api
      .operation(last.id)
      .then(setLast)
      .catch(() => undefined);
  }, [inFlight?.id, last?.id, last?.state, f]);
  useEffect(() => {
    if (!newestId || inFlight?.id === newestId || last?.id === newestId) return;
    api
      .operation(newestId)
      .then(setLast)
      .catch(() => undefined);
  }, [newestId]);
  if (inFlight) return inFlight;
  if (started && (!last || last.id !== started.id)) return started;
  return last;
}

function Federation({ name }: { name: string }) {
  const { data: f, error } = usePoll(() => api.federation(name), [name]);
  const audit = usePoll(() => api.audit(name), [name]);
  const [started, setStarted] = useState<OperationView | undefined>();
  const op = useCurrentOperation(f, audit.data, started);
  return (
    <section aria-labelledby="fed-title">
      <p>
        <a href="#/">← all federations</a>
      </p>
      <h2 id="fed-title">{name}</h2>
      <Problem text={error} />
      {f && (
        <>
          <p class="summary">
            primary <strong>{f.designatedPrimary ?? "none"}</strong> · epoch {f.epoch} · failover {f.mode}
            {f.paused ? " (paused)" : ""} · {f.lastDecision}
          </p>
          <Gauge f={f} />
          {f.alerts.map((a) => (
            <p key={a.name} class="bad" role="status">
              alert {a.name}: {a.reason}
            </p>
          ))}
          <Members f={f} />
          <Chart f={f} />
          <h3>Operation</h3>
          {op ? <LiveOperation first={op} /> : <p class="muted">No operation yet.</p>}
          {op && op.state === "awaitingApproval" ? <ApproveForm op={op} /> : null}
          {!op || isFinishedState(op.state) ? <SwitchoverForm f={f} onStarted={setStarted} /> : null}
          <Audit data={audit.data} error={audit.error} />
          <Runbook name={name} />
        </>
      )}
    </section>
  );
}

// ---------- the page ----------

function App() {
  const hash = useHash();
  const [signedIn, setSignedIn] = useState(token.get() !== null);
  const [problem, setProblem] = useState<string | undefined>();
  // A token the API refuses sends the user back to the form with the API's words.
  useEffect(() => {
    if (!signedIn) return;
    api.federations().catch((e: unknown) => {
      if (e instanceof ApiProblem && (e.status === 401 || e.status === 429)) {
        token.clear();
        setProblem(errorText(e));
        setSignedIn(false);
      }
    });
  }, [signedIn]);
  const fed = /^#\/f\/(.+)$/.exec(hash)?.[1];
  return (
    <>
      <header>
        <h1>
          <a href="#/">pgfed</a>
        </h1>
        {signedIn && (
          <button
            type="button"
            class="link"
            onClick={() => {
              token.clear();
              setSignedIn(false);
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main>
        {!signedIn ? (
          <TokenForm
            problem={problem}
            onToken={() => {
              setProblem(undefined);
              setSignedIn(true);
            }}
          />
        ) : fed ? (
          <Federation name={decodeURIComponent(fed)} />
        ) : (
          <Overview />
        )}
      </main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
