/** CNPG's own CRD and sample manifests from the workspace's shared/ (absent in a clone outside it). */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { parseAllDocuments } from "yaml";
import type { KubeObject } from "../../../src/lab/kube-api/index.js";

export const UPSTREAM_DIR = join(import.meta.dirname, "../../../../shared/cnpg-upstream");
export const HAVE_UPSTREAM = existsSync(join(UPSTREAM_DIR, "postgresql.cnpg.io_clusters.yaml"));
export const UPSTREAM_MISSING = `CNPG's CRD and samples are not at ${UPSTREAM_DIR} (a clone outside the workspace): skipped`;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? yamlFiles(p) : p.endsWith(".yaml") ? [p] : [];
  });
}

/** Every Cluster manifest among CNPG's samples, with the file it comes from. */
export function sampleClusters(): Array<{ file: string; cluster: KubeObject }> {
  const dir = join(UPSTREAM_DIR, "samples");
  return yamlFiles(dir).flatMap((file) =>
    parseAllDocuments(readFileSync(file, "utf8"))
      .map((d) => d.toJSON() as unknown)
      .filter((o): o is KubeObject => typeof o === "object" && o !== null && (o as { kind?: unknown }).kind === "Cluster")
      .map((cluster) => ({ file: relative(dir, file), cluster })),
  );
}

/** The openAPIV3Schema of CNPG's Cluster CRD. */
export function upstreamClusterSchema(): Record<string, unknown> {
  const doc = parseAllDocuments(readFileSync(join(UPSTREAM_DIR, "postgresql.cnpg.io_clusters.yaml"), "utf8"))[0]?.toJSON() as {
    spec: { versions: Array<{ schema: { openAPIV3Schema: Record<string, unknown> }; additionalPrinterColumns: unknown[] }> };
  };
  const v = doc.spec.versions[0];
  if (!v) throw new Error("CNPG's CRD has no version");
  return { schema: v.schema.openAPIV3Schema, columns: v.additionalPrinterColumns };
}
