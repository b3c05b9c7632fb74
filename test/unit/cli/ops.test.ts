import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { resolveTarget } from "../../../src/cli/client.js";
import { formatSummary } from "../../../src/cli/ops.js";
import { runCli } from "../../../src/cli/program.js";
import type { OperationView } from "../../../src/api/contract.js";
import { escapeHtml, renderHtml, renderMarkdown, rulesFrom, runbookDocument } from "../../../src/cli/runbook-document.js";
import { resetOrders, startHarness, OPERATOR_TOKEN, VIEWER_TOKEN, type Harness } from "../api/helpers.js";

let h: Harness;
let slow: Harness;
let dir: string;
beforeAll(async () => {
  h = await startHarness({ stepMs: 10 });
  slow = await startHarness({ hang: true });
  dir = await mkdtemp(join(tmpdir(), "pgfed-cli-"));
});
afterAll(async () => {
  await h.close();
  await slow.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => resetOrders(h.fake));

async function cli(args: string[], o: { server?: Harness; token?: string; isTTY?: boolean; confirm?: boolean } = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io = {
    out: (t: string) => (out += t),
    err: (t: string) => (err += t),
    isTTY: o.isTTY ?? false,
    confirm: async () => o.confirm ?? false,
    env: {},
    cwd: dir,
  };
  const code = await runCli([...args, "--server", (o.server ?? h).api.url, "--token", o.token ?? OPERATOR_TOKEN], io);
  return { code, out, err };
}

describe("pgfed status", () => {
  it("prints a table of members that fits 80 columns", async () => {
    const r = await cli(["status", "orders"], { token: VIEWER_TOKEN });
    expect(r.code).toBe(0);
    expect(r.out).toContain("federation orders   epoch 3   primary pg-eu");
    expect(r.out).toMatch(/MEMBER\s+REGION\s+ROLE\s+STATE\s+PHASE\s+LAG/);
    expect(r.out).toMatch(/pg-ap\s+ap-south\s+replica\s+replica\s+Cluster in healthy state\s+45.0s/);
    expect(r.out).toContain("budget 30.0s [ok]");
    for (const line of r.out.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);
  });

  it("marks a member whose last report is older than the lease TTL, with its age", async () => {
    const eu = h.fake.feds.get("orders")?.members.find((m) => m.name === "pg-eu");
    if (!eu) throw new Error("no fixture");
    eu.observedAgoSeconds = 12.4; // lease TTL 10 s
    const r = await cli(["status", "orders"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/pg-eu\s+eu-west\s+primary\?\s+primary\?\s/);
    expect(r.out).toContain("pg-eu: unreachable? last report 12 s ago (lease TTL 10.0s)");
    expect(r.out).toMatch(/pg-us\s+us-east\s+replica\s+replica\s/);
    expect(r.out).not.toContain("pg-us: unreachable?");
    for (const line of r.out.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);

    eu.observedAgoSeconds = 10; // exactly the TTL: still current
    expect((await cli(["status", "orders"])).out).not.toContain("unreachable?");
  });

  it("marks a member that does not follow the primary and says why, within 80 columns", async () => {
    const us = h.fake.feds.get("orders")?.members.find((m) => m.name === "pg-us");
    if (!us) throw new Error("no fixture");
    us.following = false;
    us.notFollowing = "on timeline 1, primary pg-eu on timeline 3";
    onTestFinished(() => {
      us.following = true;
      delete us.notFollowing;
    });
    const r = await cli(["status", "orders"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/MEMBER\s+REGION\s+ROLE\s+STATE\s+PHASE\s+LAG\s+LOSS/);
    expect(r.out).toMatch(/pg-us\s+us-east\s+replica\s+replica\*\s+Cluster in healthy state\s/);
    expect(r.out).toMatch(/pg-ap\s+ap-south\s+replica\s+replica\s+Cluster/);
    expect(r.out).toContain("* pg-us is NOT FOLLOWING the primary: on timeline 1, primary pg-eu on timeline 3");
    for (const line of r.out.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);
    const j = JSON.parse((await cli(["status", "orders", "-o", "json"])).out) as { members: { name: string; following: boolean; notFollowing?: string }[] };
    expect(j.members.find((m) => m.name === "pg-us")).toMatchObject({ following: false, notFollowing: "on timeline 1, primary pg-eu on timeline 3" });
    expect(j.members.find((m) => m.name === "pg-ap")).toMatchObject({ following: true });
    expect(j.members.find((m) => m.name === "pg-ap")?.notFollowing).toBeUndefined();
  });

  it("prints no marker while every member follows", async () => {
    const r = await cli(["status", "orders"]);
    expect(r.out).not.toContain("NOT FOLLOWING");
    expect(r.out).not.toMatch(/replica\*/);
  });

  it("prints JSON and YAML", async () => {
    const j = await cli(["status", "orders", "-o", "json"]);
    expect((JSON.parse(j.out) as { name: string }).name).toBe("orders");
    const y = await cli(["status", "-o", "yaml"]);
    expect(y.out).toContain("- name: orders");
  });

  it("-o wide adds the Cluster, timeline, lag in bytes, reachability and report age", async () => {
    const r = await cli(["status", "orders", "-o", "wide"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/MEMBER\s+REGION\s+ROLE\s+STATE\s+PHASE\s+LAG\s+LOSS\s+CLUSTER\s+TL\s+LAG BYTES\s+REACHABLE\s+SEEN/);
    const us = h.fake.feds.get("orders")?.members.find((m) => m.name === "pg-us");
    if (!us) throw new Error("no fixture");
    expect(r.out).toContain(`${us.namespace}/${us.cluster}`);
    expect((await cli(["status", "orders"])).out).not.toContain("REACHABLE");
  });

  it("refuses an unknown -o with exit 64 before asking the API", async () => {
    let err = "";
    // Port 1 answers nothing: exit 1 (unreachable) would mean the API was asked first.
    const code = await runCli(["status", "orders", "-o", "jsno", "--server", "http://127.0.0.1:1"], { out: () => undefined, err: (t) => (err += t) });
    expect(code).toBe(64);
    expect(err).toContain('-o must be one of table, wide, json, yaml, not "jsno"');
    expect((await cli(["switchover", "orders", "--to", "pg-us", "--dry-run", "-o", "xml"])).code).toBe(64);
    expect((await cli(["runbook", "orders", "-o", "json"])).code).toBe(64);
  });

  it("prints a dry run's plan as JSON with -o json", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-us", "--dry-run", "-o", "json"]);
    expect(r.code, r.err).toBe(0);
    const plan = JSON.parse(r.out) as { kind: string; allowed: boolean; preconditions: unknown[] };
    expect(plan).toMatchObject({ kind: "switchover", allowed: true });
    expect(plan.preconditions.length).toBeGreaterThan(0);
  });

  it("exits 2 with the API's message for an unknown federation", async () => {
    const r = await cli(["status", "nope"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown federation "nope"');
  });
});

describe("pgfed switchover", () => {
  it("--dry-run prints the plan with ✓ and numbers and changes nothing", async () => {
    const before = h.fake.mutatingCalls().length;
    const r = await cli(["switchover", "orders", "--to", "pg-us", "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("plan: switchover orders → pg-us: allowed");
    expect(r.out.replace(/\s+/g, " ")).toContain("✓ target lag within budget: pg-us lags 0.4 s, budget 30 s (lagSeconds=0.4, budgetSeconds=30)");
    expect(r.out).toContain("expected data loss: 0ms");
    expect(r.out).toContain("expected duration:  6.00s");
    expect(r.out).toContain("1. demote:");
    expect(h.fake.mutatingCalls().length).toBe(before);
  });

  it("--dry-run of a refused plan prints ✗ and exits 2", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-ap", "--dry-run"]);
    expect(r.code).toBe(2);
    expect(r.out).toContain("REFUSED");
    expect(r.out).toContain("✗ target lag within budget");
  });

  it("refuses without a terminal and without --yes: exit 64, nothing called", async () => {
    const before = h.fake.mutatingCalls().length;
    const r = await cli(["switchover", "orders", "--to", "pg-us"]);
    expect(r.code).toBe(64);
    expect(r.err).toContain("pass --yes");
    expect(h.fake.mutatingCalls().length).toBe(before);
  });

  it("asks on a terminal and stops when not confirmed", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-us"], { isTTY: true, confirm: false });
    expect(r.code).toBe(2);
    expect(r.err).toContain("not confirmed");
  });

  it("--wait follows each step and ends with the summary, exit 0", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-us", "--yes", "--wait", "--reason", "drill"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/operation op-\d+: switchover orders pg-eu → pg-us \(running\), requested by alice/);
    expect(r.err).toMatch(/\]\s+demote: demoting pg-eu/);
    expect(r.err).toMatch(/\]\s+promote: promoting pg-us/);
    expect(r.out).toContain("switchover orders → pg-us completed");
    expect(r.out).toMatch(/duration 1\.20s, data loss 0ms, epoch 3 → 4/);
    for (const line of `${r.out}${r.err}`.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);
    const f = h.fake.feds.get("orders");
    if (f) f.epoch = 3;
  });

  it("on a terminal draws a spinner and ticks each step", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-us", "--yes"], { isTTY: true });
    expect(r.code).toBe(0);
    expect(r.err).toContain("✓ demote");
    expect(r.err).toContain("\r\x1b[K");
    const f = h.fake.feds.get("orders");
    if (f) f.epoch = 3;
  });

  it("--no-wait returns once started", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-us", "--yes", "--no-wait"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("follow it: pgfed status orders");
    for (let i = 0; i < 50 && h.fake.feds.get("orders")?.operation?.state === "running"; i++) await new Promise((res) => setTimeout(res, 20));
    const f = h.fake.feds.get("orders");
    if (f) f.epoch = 3;
  });

  it("exits 2 when the API refuses (lag beyond the budget)", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-ap", "--yes"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("refused (422 Refused)");
    expect(r.err).toContain("budget 30 s");
  });

  it("exits 3 when the operation aborts", async () => {
    const bad = await startHarness({ stepMs: 5, abort: true });
    try {
      const r = await cli(["switchover", "orders", "--to", "pg-us", "--yes", "--wait"], { server: bad });
      expect(r.code).toBe(3);
      expect(r.out).toContain("ABORTED at step promote");
    } finally {
      await bad.close();
    }
  });

  it("exits 4 when waiting times out", async () => {
    const r = await cli(["switchover", "orders", "--to", "pg-us", "--yes", "--wait", "--timeout", "300ms"], { server: slow });
    expect(r.code).toBe(4);
    expect(r.err).toContain("gave up waiting after 300ms");
  });

  it("exits 64 for a missing --to and a bad --timeout", async () => {
    expect((await cli(["switchover", "orders"])).code).toBe(64);
    expect((await cli(["switchover", "orders", "--to", "pg-us", "--yes", "--timeout", "soon"])).code).toBe(64);
  });

  it("exits 2 for a viewer token", async () => {
    const r = await cli(["pause", "orders"], { token: VIEWER_TOKEN });
    expect(r.code).toBe(2);
    expect(r.err).toContain("403");
  });
});

describe("failover, approve, pause, audit", () => {
  it("shows the approval hint, and approve lets it finish", async () => {
    const started = await cli(["failover", "orders", "--to", "pg-ap", "--yes", "--no-wait"]);
    expect(started.code).toBe(0);
    const id = /operation (op-\d+)/.exec(started.out)?.[1] ?? "";
    expect(started.out).toContain("waiting for approval");
    expect(started.out.replace(/\s+/g, " ")).toContain(`approve it: pgfed approve ${id} --accept-data-loss <duration>`);
    const short = await cli(["approve", id, "--accept-data-loss", "10s"]);
    expect(short.code).toBe(2);
    const ok = await cli(["approve", id, "--accept-data-loss", "1m", "--wait"]);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("failover orders → pg-ap completed");
    expect(ok.out).toContain("(accepted 1m00s)");
    const f = h.fake.feds.get("orders");
    if (f) f.epoch = 3;
  });

  it("names a rejoin by its member and the primary it clones from, not as a move of the primary role", () => {
    const op = { id: "rejoin-1", kind: "rejoin", federation: "orders", from: "pg-eu", target: "pg-us", state: "completed", step: "done", epochBefore: 3, epochAfter: 3, durationSeconds: 1.7, dataLossSeconds: null, acceptedLossSeconds: null, lastDecision: "pg-us follows pg-eu again" } as unknown as OperationView;
    const text = formatSummary(op);
    expect(text).toContain("rejoin orders pg-us (from pg-eu) completed");
    expect(text).not.toContain("→ pg-us");
  });

  it("pauses and resumes", async () => {
    expect((await cli(["pause", "orders", "--reason", "window"])).out).toContain("(PAUSED)");
    expect((await cli(["resume", "orders"])).out).not.toContain("(PAUSED)");
  });

  it("resolves a federation waiting for an operator, naming the primary", async () => {
    const fed = h.fake.feds.get("orders");
    if (!fed) throw new Error("no orders");
    fed.designatedPrimary = null;
    const refused = await cli(["resolve", "orders", "--primary", "pg-us", "--yes"]);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain("it is not a primary cluster");
    const r = await cli(["resolve", "orders", "--primary", "pg-eu", "--yes", "--reason", "checked"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("primary pg-eu");
    expect((await cli(["resolve", "orders", "--yes"])).code).toBe(64);
  });

  it("prints the audit trail", async () => {
    const r = await cli(["audit", "orders", "--since", "1h"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("alice  pause");
    expect(r.out).toContain("reason: window");
    const j = await cli(["audit", "orders", "-o", "json", "--limit", "1"]);
    expect((JSON.parse(j.out) as unknown[]).length).toBe(1);
  });
});

describe("pgfed runbook", () => {
  it("renders markdown with the commands and today's numbers", async () => {
    const r = await cli(["runbook", "orders"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("# DR runbook: federation orders");
    expect(r.out).toContain("pgfed switchover orders --to pg-us --dry-run");
    expect(r.out).toContain("pgfed failover orders --to pg-us --reason 'region lost' --yes");
    expect(r.out).toContain("pgfed rejoin orders pg-eu --yes");
    expect(r.out).toContain("RPO budget 30.0s; warning at 50% = 15.0s");
    expect(r.out).toContain("10.0s + clock-skew margin 2.00s = 12.0s");
    expect(r.out).toContain("kubectl --context us-east get clusters.postgresql.cnpg.io pg-us -n db -o jsonpath='{.status.demotionToken}{\"\\n\"}'");
    expect(r.out).toContain("lastPromotionToken");
    expect(r.out).toContain("select pg_is_in_recovery()");
    expect(r.out).toContain("`pg-us-rw.db.svc`");
    expect(r.out).toContain("`pg-ap`: lag 45.0s, loss if promoted now 45.0s: beyond the budget");
  });

  it("shows the coordinator's leaseTtl and clockSkewMargin without --config", async () => {
    const f = h.fake.feds.get("orders");
    if (!f) throw new Error("no fixture");
    f.failover = { leaseTtlSeconds: 15, clockSkewMarginSeconds: 3 };
    const r = await cli(["runbook", "orders"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("lease TTL 15.0s + clock-skew margin 3.00s = 18.0s");
    expect(r.out).toContain("source: the coordinator's configuration, as its API reports it");
    expect(r.out).not.toContain("10.0s + clock-skew margin 2.00s");
  });

  it("reads leaseTtl and clockSkewMargin from --config", async () => {
    const cfg = join(dir, "pgfed.yaml");
    await writeFile(
      cfg,
      `federations:
  - name: orders
    failover: { mode: automatic, leaseTtl: 20s, clockSkewMargin: 5s }
    members:
      - { name: pg-eu, region: eu-west, namespace: db, cluster: pg-eu, postgres: { host: x } }
      - { name: pg-us, region: us-east, namespace: db, cluster: pg-us, postgres: { host: y } }
regions: [{ name: eu-west }, { name: us-east }]
bus: { servers: [nats://127.0.0.1:4222] }
`,
    );
    const r = await cli(["runbook", "orders", "--config", cfg]);
    expect(r.out).toContain("lease TTL 20.0s + clock-skew margin 5.00s = 25.0s");
  });

  it("writes a standalone HTML page with everything escaped", async () => {
    const file = join(dir, "runbook.html");
    const r = await cli(["runbook", "orders", "--format", "html", "-o", file]);
    expect(r.code).toBe(0);
    const html = await readFile(file, "utf8");
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(html).toContain("<code>pgfed switchover orders --to pg-us --dry-run");
    expect(html).not.toMatch(/<script/i);

    const f = h.fake.getFederation("orders");
    if (!f) throw new Error("no fixture");
    f.lastDecision = `<script>alert("x")</script> & 'quotes'`;
    const evil = f.members[1];
    if (evil) evil.phase = "<img src=x onerror=alert(1)>";
    const page = renderHtml(runbookDocument({ federation: f, rules: rulesFrom(f, undefined, ""), server: "http://127.0.0.1:1", generatedAt: new Date(0) }));
    expect(page).not.toContain("<script>");
    expect(page).not.toContain("<img");
    expect(page).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;");
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  });

  it("refuses an unknown format with 64", async () => {
    expect((await cli(["runbook", "orders", "--format", "pdf"])).code).toBe(64);
  });

  it("never suggests a replica that does not follow the primary, and says why it is left out", () => {
    const f = structuredClone(h.fake.getFederation("orders"));
    if (!f) throw new Error("no fixture");
    const us = f.members.find((m) => m.name === "pg-us");
    if (!us) throw new Error("no pg-us in the fixture");
    us.following = false;
    us.notFollowing = "on timeline 1, primary pg-eu on timeline 2";
    us.lossIfPromotedSeconds = 0; // the least loss on paper: still not the target
    const md = renderMarkdown(runbookDocument({ federation: f, rules: rulesFrom(f, undefined, ""), server: "http://127.0.0.1:1", generatedAt: new Date(0) }));
    expect(md).not.toContain("pgfed switchover orders --to pg-us");
    expect(md).toContain("pgfed switchover orders --to pg-ap --dry-run");
    expect(md).toContain("`pg-us`: lag");
    expect(md).toContain("NOT FOLLOWING the primary: on timeline 1, primary pg-eu on timeline 2");
  });
});

describe("finding the server", () => {
  it("prefers flags, then env, then the config file, then ./.lab/lab.json", async () => {
    const home = join(dir, "home");
    const cwd = join(dir, "work");
    await mkdir(join(home, ".config", "pgfed"), { recursive: true });
    await mkdir(join(cwd, ".lab"), { recursive: true });
    await writeFile(join(cwd, ".lab", "lab.json"), JSON.stringify({ extra: { api: "http://127.0.0.1:9/", token: "lab-token" } }));
    expect(resolveTarget({ env: {}, home, cwd })).toMatchObject({ server: "http://127.0.0.1:9", token: "lab-token" });
    await writeFile(join(home, ".config", "pgfed", "config.yaml"), "server: https://pgfed.example:8443\ntoken: file-token\n");
    expect(resolveTarget({ env: {}, home, cwd })).toMatchObject({ server: "https://pgfed.example:8443", token: "file-token" });
    expect(resolveTarget({ env: { PGFED_SERVER: "http://env:1", PGFED_TOKEN: "env-token" }, home, cwd })).toMatchObject({ server: "http://env:1", token: "env-token" });
    expect(resolveTarget({ server: "http://flag:1", env: { PGFED_SERVER: "http://env:1" }, home, cwd })).toMatchObject({ server: "http://flag:1", token: "file-token" });
    expect(() => resolveTarget({ env: {}, home: join(dir, "nohome"), cwd: join(dir, "nowhere") })).toThrow(/no pgfed API server configured/);
  });

  it("says where it looked and how to point it at a server when none is configured", () => {
    let message = "";
    try {
      resolveTarget({ env: {}, home: join(dir, "nohome"), cwd: join(dir, "nowhere") });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain("pgfed looked, in this order, at:");
    expect(message).toContain(join(dir, "nohome", ".config", "pgfed", "config.yaml"));
    expect(message).toContain(`${join(dir, "nowhere", ".lab", "lab.json")}  not found`);
    expect(message).toContain("export PGFED_SERVER=");
    expect(message).toContain("--server");
  });

  it("works with no flags in a lab directory", async () => {
    const cwd = join(dir, "labcwd");
    await mkdir(join(cwd, ".lab"), { recursive: true });
    await writeFile(join(cwd, ".lab", "lab.json"), JSON.stringify({ extra: { api: h.api.url, token: OPERATOR_TOKEN } }));
    let out = "";
    const code = await runCli(["status", "orders"], { out: (t) => (out += t), err: () => undefined, isTTY: false, env: {}, cwd } as Parameters<typeof runCli>[1]);
    expect(code).toBe(0);
    expect(out).toContain("federation orders");
  });
});
