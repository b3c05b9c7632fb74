/** `pgfed evacuate` against the API (its fake coordinator runs the real evacuation orchestration). */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runCli } from "../../../src/cli/program.js";
import { resetOrders, startHarness, OPERATOR_TOKEN, VIEWER_TOKEN, type Harness } from "../api/helpers.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ stepMs: 5 });
});
afterAll(async () => {
  await h.close();
});
beforeEach(() => resetOrders(h.fake));

async function cli(args: string[], token = OPERATOR_TOKEN): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io = { out: (t: string) => (out += t), err: (t: string) => (err += t), isTTY: false, confirm: async () => false, env: {}, cwd: "/" };
  const code = await runCli([...args, "--server", h.api.url, "--token", token], io);
  return { code, out, err };
}

describe("pgfed evacuate", () => {
  it("--dry-run lists each move with its numbers and changes nothing", async () => {
    const r = await cli(["evacuate", "eu-west", "--dry-run"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("evacuation of region eu-west (dry run, 4 at a time): 1 federation(s) with their primary there");
    // pg-ap lags beyond the budget: the move goes to pg-us.
    expect(r.out).toMatch(/orders\s+pg-eu\s+pg-us\s+\S+\s+\S+\s+planned/);
    expect(r.out).toContain("1 to move, 0 without an eligible target; nothing was changed (dry run)");
    expect(h.fake.feds.get("orders")?.designatedPrimary).toBe("pg-eu");
    const j = JSON.parse((await cli(["evacuate", "eu-west", "--dry-run", "-o", "json"])).out) as { moves: { target: string }[]; dryRun: boolean };
    expect(j).toMatchObject({ dryRun: true, moves: [{ target: "pg-us" }] });
  });

  it("moves every federation, shows progress and a summary, with --yes --wait", async () => {
    const r = await cli(["evacuate", "eu-west", "--yes", "--wait", "--parallel", "2", "--reason", "region maintenance"]);
    expect(r.code, `${r.out}${r.err}`).toBe(0);
    expect(r.err).toMatch(/evacuation evacuation-eu-west-\S+ of region eu-west: 1 switchover\(s\), 2 at a time, 0 skipped/);
    expect(r.err).toMatch(/orders: ✓ moved to pg-us in/);
    expect(r.out).toMatch(/evacuation \S+ of region eu-west completed \(2 at a time\), requested by /);
    expect(r.out).toContain("1 moved, 0 failed, 0 skipped");
    const call = h.fake.calls.find((c) => c.method === "switchover" && !c.dryRun);
    expect(call?.ctx?.reason).toMatch(/^evacuation \S+ of region eu-west: region maintenance$/);
  });

  it("refuses bad input before asking, a read-only token in the API's words, and says when there is nothing to do", async () => {
    expect((await cli(["evacuate", "eu-west", "--parallel", "0", "--yes"])).code).toBe(64);
    expect((await cli(["evacuate", "eu-west"])).err).toContain("pass --yes");
    const viewer = await cli(["evacuate", "eu-west", "--dry-run"], VIEWER_TOKEN);
    expect(viewer.code).toBe(2);
    expect(viewer.err).toContain("needs role operator");
    const none = await cli(["evacuate", "us-east", "--yes"]);
    expect(none.code, none.err).toBe(0);
    expect(none.out).toContain("no federation has its primary in region us-east; nothing to do");
    const unknown = await cli(["evacuate", "mars", "--dry-run"]);
    expect(unknown.err).toContain('unknown region "mars"');
  });
});
