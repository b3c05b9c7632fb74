/**
 * A kubeconfig with one cluster, user and context per region (context name = region name), for
 * pgfed's kube code, client-node and kubectl alike.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { stringify } from "yaml";

export interface KubeconfigRegion {
  name: string;
  url: string;
  token: string;
  /** CA of an https server; plain http entries get `insecure-skip-tls-verify: true`. */
  caFile?: string;
}

export function kubeconfigDocument(regions: KubeconfigRegion[]): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Config",
    preferences: {},
    "current-context": regions[0]?.name ?? "",
    clusters: regions.map((r) => ({
      name: r.name,
      cluster: r.caFile ? { server: r.url, "certificate-authority": r.caFile } : { server: r.url, "insecure-skip-tls-verify": true },
    })),
    users: regions.map((r) => ({ name: r.name, user: { token: r.token } })),
    contexts: regions.map((r) => ({ name: r.name, context: { cluster: r.name, user: r.name } })),
  };
}

/** Writes the kubeconfig (mode 0600: it holds tokens). */
export async function writeKubeconfig(path: string, regions: KubeconfigRegion[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, stringify(kubeconfigDocument(regions)), { mode: 0o600 });
}
