import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { authenticate, hashToken, parseTokenFile, tokenLine } from "../../../src/api/auth.js";
import type { OperationView, PlanView } from "../../../src/api/contract.js";
import { resetOrders, startHarness, VIEWER_TOKEN, type Harness } from "./helpers.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ stepMs: 15 });
});
afterAll(async () => {
  await h.close();
});
beforeEach(() => {
  h.fake.leaderFlag = true;
  h.fake.leaderInfo = { id: "coord-1", apiUrl: null };
});

async function waitDone(id: string): Promise<OperationView> {
  for (let i = 0; i < 50; i++) {
    const r = await h.call("GET", `/v1/operations/${id}?wait=2s`, { token: VIEWER_TOKEN });
    const op = r.body as unknown as OperationView;
    if (["completed", "aborted", "refused", "cancelled", "resolved"].includes(op.state)) return op;
  }
  throw new Error(`operation ${id} did not finish`);
}

const resetFederation = (): void => resetOrders(h.fake);

describe("service endpoints", () => {
  it("answers /healthz, /readyz and /metrics without a token", async () => {
    expect((await h.call("GET", "/healthz", { token: null })).body).toEqual({ ok: true });
    const ready = await h.call("GET", "/readyz", { token: null });
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ ready: true, leader: true, leaderId: "coord-1" });
    const metrics = await h.call("GET", "/metrics", { token: null });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain("pgfed_test_gauge 7");
    expect(metrics.headers.get("content-type")).toContain("text/plain");
  });

  it("is not ready when it is not the leader and knows no leader", async () => {
    h.fake.leaderFlag = false;
    h.fake.leaderInfo = null;
    const r = await h.call("GET", "/readyz", { token: null });
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ kind: "Status", reason: "NotReady" });
  });
});

describe("federations", () => {
  it("lists federations and reads one", async () => {
    const list = await h.call("GET", "/v1/federations", { token: VIEWER_TOKEN });
    expect(list.status).toBe(200);
    expect((list.body.items as { name: string }[]).map((f) => f.name)).toEqual(["orders"]);
    const one = await h.call("GET", "/v1/federations/orders", { token: VIEWER_TOKEN });
    expect(one.body).toMatchObject({ name: "orders", epoch: expect.any(Number) as number, designatedPrimary: "pg-eu" });
  });

  it("answers 404 naming the known federations for an unknown one", async () => {
    const r = await h.call("GET", "/v1/federations/nope");
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ kind: "Status", code: 404, reason: "NotFound", field: "name" });
    expect(r.body.message).toContain("known: orders");
  });
});

describe("switchover", () => {
  beforeEach(resetFederation);

  it("dry run answers the plan and changes nothing", async () => {
    const before = JSON.stringify(h.fake.getFederation("orders"));
    const mutating = h.fake.mutatingCalls().length;
    const r = await h.call("POST", "/v1/federations/orders/switchover?dryRun=true", { body: { target: "pg-us", reason: "drill" } });
    expect(r.status).toBe(200);
    const plan = r.body as unknown as PlanView;
    expect(plan).toMatchObject({ kind: "switchover", target: "pg-us", allowed: true, refusal: null });
    expect(plan.preconditions.every((p) => p.ok)).toBe(true);
    expect(plan.preconditions[1]?.numbers).toMatchObject({ lagSeconds: 0.4, budgetSeconds: 30 });
    expect(h.fake.mutatingCalls().length).toBe(mutating);
    expect(JSON.stringify(h.fake.getFederation("orders"))).toBe(before);
    expect(h.fake.calls.at(-1)).toMatchObject({ method: "switchover", dryRun: true, ctx: { requestedBy: "alice", reason: "drill" } });
  });

  it("dry run of a refused switchover answers 200 with the refusal and its numbers", async () => {
    const r = await h.call("POST", "/v1/federations/orders/switchover?dryRun=1", { body: { target: "pg-ap" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ allowed: false, refusal: expect.stringContaining("lags 45 s") as string });
  });

  it("starts an operation: 202, Location, requestedBy from the token, and it completes", async () => {
    const r = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us", reason: "maintenance" } });
    expect(r.status).toBe(202);
    const op = r.body as unknown as OperationView;
    expect(r.headers.get("location")).toBe(`/v1/operations/${op.id}`);
    expect(op).toMatchObject({ kind: "switchover", target: "pg-us", requestedBy: "alice", reason: "maintenance" });
    const done = await waitDone(op.id);
    expect(done).toMatchObject({ state: "completed", dataLossSeconds: 0, epochAfter: op.epochBefore + 1 });
  });

  it("returns the same operation for a repeated Idempotency-Key", async () => {
    const headers = { "idempotency-key": "key-123" };
    const a = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us" }, headers });
    const b = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us" }, headers });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.id).toBe(a.body.id);
    expect(h.fake.calls.at(-1)?.ctx?.idempotencyKey).toBe("key-123");
    await waitDone(String(a.body.id));
  });

  it("answers 409 while another operation is in flight", async () => {
    const a = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us" } });
    const b = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us" } });
    expect(b.status).toBe(409);
    expect(b.body).toMatchObject({ kind: "Status", reason: "Conflict" });
    await waitDone(String(a.body.id));
  });

  it("refuses a switchover to a member that lags more than the budget with 422 naming the field", async () => {
    const r = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-ap" } });
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ reason: "Refused", field: "target" });
    expect(r.body.message).toContain("budget 30 s");
  });

  it("answers 404 for an unknown member without calling the service", async () => {
    const n = h.fake.calls.length;
    const r = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-xx" } });
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ field: "body.target" });
    expect(h.fake.calls.length).toBe(n);
  });
});

describe("failover and approval", () => {
  beforeEach(resetFederation);

  it("waits for approval beyond the budget, refuses too small an acceptance, then completes", async () => {
    const r = await h.call("POST", "/v1/federations/orders/failover", { body: { target: "pg-ap", reason: "region lost" } });
    expect(r.status).toBe(202);
    const op = r.body as unknown as OperationView;
    expect(op.state).toBe("awaitingApproval");
    expect(op.lastDecision).toContain("exceeds budget 30 s");
    const short = await h.call("POST", `/v1/operations/${op.id}/approve`, { body: { acceptDataLoss: "30s" } });
    expect(short.status).toBe(422);
    expect(short.body.field).toBe("acceptDataLoss");
    const dry = await h.call("POST", `/v1/operations/${op.id}/approve?dryRun=true`, { body: { acceptDataLoss: "1m" } });
    expect(dry.status).toBe(200);
    expect(h.fake.getOperation(op.id)?.state).toBe("awaitingApproval");
    const ok = await h.call("POST", `/v1/operations/${op.id}/approve`, { body: { acceptDataLoss: "1m", reason: "accepted by IC" } });
    expect(ok.status).toBe(202);
    expect(h.fake.calls.at(-1)).toMatchObject({ method: "approve", args: { acceptDataLossSeconds: 60 }, ctx: { requestedBy: "alice" } });
    expect(await waitDone(op.id)).toMatchObject({ state: "completed", dataLossSeconds: 60 });
  });

  it("accepts the approval through the federation route, with seconds as a number", async () => {
    const r = await h.call("POST", "/v1/federations/orders/failover", { body: { target: "pg-ap" } });
    const id = String(r.body.id);
    const wrong = await h.call("POST", "/v1/federations/orders/approve", { body: { operation: "op-999", acceptDataLoss: 50 } });
    expect(wrong.status).toBe(404);
    expect(wrong.body.field).toBe("body.operation");
    const ok = await h.call("POST", "/v1/federations/orders/approve", { body: { operation: id, acceptDataLoss: 50 } });
    expect(ok.status).toBe(202);
    expect(await waitDone(id)).toMatchObject({ state: "completed", acceptedLossSeconds: 50 });
  });

  it("fails over at once within the budget", async () => {
    const r = await h.call("POST", "/v1/federations/orders/failover", { body: {} });
    expect(r.status).toBe(202);
    expect(r.body.state).toBe("running");
    await waitDone(String(r.body.id));
  });
});

describe("rejoin, pause, resume", () => {
  beforeEach(resetFederation);

  it("refuses to rejoin a member that has not diverged, and rejoins a diverged one", async () => {
    const no = await h.call("POST", "/v1/federations/orders/members/pg-us/rejoin", { body: { reason: "back" } });
    expect(no.status).toBe(422);
    const m = h.fake.feds.get("orders")?.members.find((x) => x.name === "pg-us");
    if (m) m.diverged = true;
    const yes = await h.call("POST", "/v1/federations/orders/members/pg-us/rejoin", {});
    expect(yes.status).toBe(202);
    expect(yes.body).toMatchObject({ kind: "rejoin", target: "pg-us" });
    await waitDone(String(yes.body.id));
    if (m) m.diverged = false;
  });

  it("pauses and resumes, with a POST body or none", async () => {
    const p = await h.call("POST", "/v1/federations/orders/pause", { body: { reason: "maintenance window" } });
    expect(p.status).toBe(200);
    expect(p.body.paused).toBe(true);
    const r = await h.call("POST", "/v1/federations/orders/resume");
    expect(r.status).toBe(200);
    expect(r.body.paused).toBe(false);
  });
});

describe("resolve", () => {
  beforeEach(resetFederation);

  it("is refused (422) when nothing requires an operator, and checks the body and role first", async () => {
    const none = await h.call("POST", "/v1/federations/orders/resolve", { body: { primary: "pg-eu" } });
    expect(none).toMatchObject({ status: 422, body: { reason: "Refused" } });
    expect(String(none.body.message)).toContain("nothing requires an operator");
    expect((await h.call("POST", "/v1/federations/orders/resolve", { body: {} })).status).toBe(400);
    expect((await h.call("POST", "/v1/federations/orders/resolve", { body: { primary: "pg-zz" } })).status).toBe(404);
    expect((await h.call("POST", "/v1/federations/orders/resolve", { token: VIEWER_TOKEN, body: { primary: "pg-eu" } })).status).toBe(403);
  });

  it("with no designated primary: refuses a replica, plans and then designates the unfenced primary (epoch + 1)", async () => {
    const fed = h.fake.feds.get("orders");
    if (!fed) throw new Error("no orders");
    fed.designatedPrimary = null;
    const epoch = fed.epoch;
    const replica = await h.call("POST", "/v1/federations/orders/resolve", { body: { primary: "pg-us" } });
    expect(replica.status).toBe(422);
    expect(String(replica.body.message)).toContain("it is not a primary cluster");
    const plan = await h.call("POST", "/v1/federations/orders/resolve?dryRun=true", { body: { primary: "pg-eu" } });
    expect(plan).toMatchObject({ status: 200, body: { kind: "resolve", target: "pg-eu", allowed: true } });
    expect(fed.designatedPrimary).toBeNull();
    const done = await h.call("POST", "/v1/federations/orders/resolve", { body: { primary: "pg-eu", reason: "checked by hand" } });
    expect(done).toMatchObject({ status: 200, body: { designatedPrimary: "pg-eu", epoch: epoch + 1 } });
  });
});

describe("operations: long-poll and events", () => {
  beforeEach(resetFederation);

  it("long-polls with afterSteps until a new step", async () => {
    const r = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us" } });
    const id = String(r.body.id);
    const next = await h.call("GET", `/v1/operations/${id}?wait=5s&afterSteps=1`, { token: VIEWER_TOKEN });
    expect((next.body.steps as unknown[]).length).toBeGreaterThan(1);
    await waitDone(id);
  });

  it("streams one event per change and ends when the operation finishes", async () => {
    const r = await h.call("POST", "/v1/federations/orders/switchover", { body: { target: "pg-us" } });
    const id = String(r.body.id);
    const res = await fetch(`${h.api.url}/v1/operations/${id}/events`, { headers: { authorization: `Bearer ${VIEWER_TOKEN}` } });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const text = await res.text();
    const events = text.split("\n\n").filter((b) => b.includes("event: operation"));
    const steps = events.map((b) => (JSON.parse(b.split("data: ")[1] ?? "{}") as OperationView).step);
    expect(steps[0]).toBe("start");
    expect(steps.at(-1)).toBe("done");
    expect(new Set(steps).size).toBe(steps.length);
    expect(text).toContain("event: end");
    expect(h.fake.listenerCount(id)).toBe(0);
  });

  it("answers 404 for an unknown operation and 400 for a bad wait", async () => {
    expect((await h.call("GET", "/v1/operations/op-nope")).status).toBe(404);
    expect((await h.call("GET", "/v1/operations/op-nope/events")).status).toBe(404);
    const bad = await h.call("GET", "/v1/operations/op-1?wait=forever");
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe("query.wait");
  });
});

describe("audit", () => {
  it("answers entries since a duration or an ISO time, limited", async () => {
    await h.call("POST", "/v1/federations/orders/pause", { body: { reason: "audit test" } });
    const all = await h.call("GET", "/v1/federations/orders/audit?since=1h", { token: VIEWER_TOKEN });
    expect(all.status).toBe(200);
    expect((all.body.items as unknown[]).length).toBeGreaterThan(0);
    const one = await h.call("GET", "/v1/federations/orders/audit?limit=1", { token: VIEWER_TOKEN });
    expect((one.body.items as { action: string }[]).map((e) => e.action)).toEqual(["pause"]);
    const future = await h.call("GET", `/v1/federations/orders/audit?since=${new Date(Date.now() + 60_000).toISOString()}`);
    expect(future.body.items).toEqual([]);
    expect(h.fake.calls.at(-1)).toMatchObject({ method: "audit", args: { sinceMs: expect.any(Number) as number } });
    const bad = await h.call("GET", "/v1/federations/orders/audit?since=yesterday");
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe("query.since");
  });
});

describe("authentication", () => {
  it("answers 401 without a token, with an unknown token, and with a malformed header", async () => {
    for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: "Basic abc" }] as Record<string, string>[]) {
      const r = await h.call("GET", "/v1/federations", { token: null, headers });
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ kind: "Status", code: 401, reason: "Unauthorized", field: "Authorization" });
      expect(r.headers.get("www-authenticate")).toContain("Bearer");
    }
  });

  it("answers 403 to a viewer calling a mutation, and calls nothing", async () => {
    const n = h.fake.calls.length;
    const r = await h.call("POST", "/v1/federations/orders/switchover", { token: VIEWER_TOKEN, body: { target: "pg-us" } });
    expect(r.status).toBe(403);
    expect(r.body.message).toContain('token "victor" has role viewer');
    expect(h.fake.calls.length).toBe(n);
  });

  it("checks the token before reading the body", async () => {
    const r = await h.call("POST", "/v1/federations/orders/switchover", { token: null, raw: "{not json" });
    expect(r.status).toBe(401);
  });

  it("parses token files, naming bad lines, and matches by hash", () => {
    const tokens = parseTokenFile(`# comment\n${tokenLine("a", "viewer", "t1")}  # trailing\n\n${tokenLine("b", "operator", "t2")}\n`);
    expect(tokens.map((t) => [t.name, t.role])).toEqual([
      ["a", "viewer"],
      ["b", "operator"],
    ]);
    expect(authenticate(tokens, "t2")?.name).toBe("b");
    expect(authenticate(tokens, "t3")).toBeUndefined();
    expect(hashToken("test").toString("hex")).toBe("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    expect(() => parseTokenFile("a admin sha256:00\nb viewer sha256:zz", "tokens")).toThrow(/tokens:1: .*\n.*tokens:2:/);
    expect(() => parseTokenFile(`${tokenLine("a", "viewer", "x")}\n${tokenLine("a", "viewer", "y")}`, "f")).toThrow(/f:2: duplicate token name "a"/);
  });
});

describe("followers", () => {
  it("redirect to the leader's API with 307", async () => {
    h.fake.leaderFlag = false;
    h.fake.leaderInfo = { id: "coord-2", apiUrl: "http://127.0.0.1:1/" };
    const n = h.fake.calls.length;
    const r = await h.call("POST", "/v1/federations/orders/switchover?dryRun=true", { body: { target: "pg-us" } });
    expect(r.status).toBe(307);
    expect(r.headers.get("location")).toBe("http://127.0.0.1:1/v1/federations/orders/switchover?dryRun=true");
    expect(r.body).toMatchObject({ reason: "NotLeader", leader: "coord-2" });
    expect(h.fake.calls.length).toBe(n);
  });

  it("answer 503 naming the leader when its address is unknown", async () => {
    h.fake.leaderFlag = false;
    h.fake.leaderInfo = { id: "coord-2", apiUrl: null };
    const r = await h.call("GET", "/v1/federations");
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ leader: "coord-2" });
    expect(r.body.message).toContain("coord-2");
    expect(r.headers.get("retry-after")).toBe("2");
  });
});
