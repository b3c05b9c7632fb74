/**
 * `pgfed run`'s coordinator loads the Kubernetes client (~0.5 s) only after it serves; its
 * per-region access is there from the start and waits for the client on first use. An unreadable
 * kubeconfig leaves its region out at once, and one the client refuses leaves it out once loaded,
 * so the corroborator judges that region's silent primary by its lease alone, as before.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { coordinatorRegionClients } from "../../../src/cli/run.js";
import { parseConfigText, type Config } from "../../../src/config.js";
import { silentLogger } from "../../../src/log.js";

const dir = mkdtempSync(join(tmpdir(), "pgfed-run-kube-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The example config with one region per kubeconfig file (only `regions` matters here). */
function configWith(kubeconfigs: string[]): Config {
  const cfg = parseConfigText(readFileSync(new URL("../../../deploy/examples/pgfed.yaml", import.meta.url), "utf8"), "example");
  const base = cfg.regions[0];
  if (!base) throw new Error("the example has no region");
  return { ...cfg, regions: kubeconfigs.map((path, i) => ({ ...base, name: `region-${i}`, kubeconfig: { path, context: "ctx" } })) };
}

const kubeconfig = (server: string): string => `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "${server}", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: ctx, context: { cluster: c, user: u } }]
current-context: ctx
`;

describe("the coordinator's region clients", () => {
  it("serve every region with a readable kubeconfig, load the client on first use, and leave out the others", async () => {
    const good = join(dir, "good.yaml");
    writeFileSync(good, kubeconfig("https://127.0.0.1:1"));
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, "apiVersion: v1\nkind: Config\nclusters: 7\n");
    const cfg = configWith([good, join(dir, "missing.yaml"), broken]);
    const names = ["region-0", "region-1", "region-2"];
    const { access, load } = coordinatorRegionClients(cfg, silentLogger(), undefined);
    // The missing file is known at once.
    expect([...access.keys()]).toEqual(names.filter((_, i) => i !== 1));
    const first = access.get("region-0");
    if (!first) throw new Error("no access for the first region");
    // The first call loads the client and asks the region's API (nothing listens on port 1).
    await expect(first.getCluster({ namespace: "db", name: "pg-eu" })).rejects.toThrow(/127\.0\.0\.1:1|ECONNREFUSED|fetch failed/);
    await load();
    // The client refused the broken file: that region is left out from then on.
    expect([...access.keys()]).toEqual(["region-0"]);
  });
});
