/**
 * Renders the deployment material with the real `kubectl kustomize` (no cluster needed) and
 * gives the tests typed access to the objects.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const run = promisify(execFile);

export const REPO = fileURLToPath(new URL("../../../", import.meta.url));
export const REGIONS = ["eu-west", "us-east", "ap-south"] as const;
export type Region = (typeof REGIONS)[number];

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface KubeObject extends JsonObject {
  apiVersion: string;
  kind: string;
  metadata: JsonObject & { name: string };
}

/** Whether kubectl is on PATH; the deploy tests skip (saying why) only when it is not. */
export async function kubectlAvailable(): Promise<boolean> {
  try {
    await run("kubectl", ["version", "--client"], { timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

/** `kubectl kustomize` of a folder under the repository, without flags (as `kubectl apply -k` builds it). */
export async function kustomize(dir: string): Promise<string> {
  const { stdout } = await run("kubectl", ["kustomize", dir], {
    cwd: REPO,
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Every document of a multi-document YAML stream; a YAML error fails the test. */
export function parseDocuments(text: string): unknown[] {
  return parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value: unknown = doc.toJS();
    return value;
  });
}

export function asKubeObject(v: unknown, where: string): KubeObject {
  if (!isObject(v)) throw new Error(`${where}: not an object`);
  const { apiVersion, kind, metadata } = v;
  if (typeof apiVersion !== "string" || apiVersion === "") throw new Error(`${where}: no apiVersion`);
  if (typeof kind !== "string" || kind === "") throw new Error(`${where}: no kind`);
  if (!isObject(metadata) || typeof metadata.name !== "string" || metadata.name === "") throw new Error(`${where}: no metadata.name`);
  return v as KubeObject;
}

/** Follows a path of keys/indices; undefined when any step is missing. */
export function at(v: unknown, ...path: (string | number)[]): unknown {
  let cur: unknown = v;
  for (const p of path) {
    if (typeof p === "number") {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[p];
    } else {
      if (!isObject(cur)) return undefined;
      cur = cur[p];
    }
  }
  return cur;
}

export function arrayAt(v: unknown, ...path: (string | number)[]): unknown[] {
  const found = at(v, ...path);
  return Array.isArray(found) ? found : [];
}

export function stringAt(v: unknown, ...path: (string | number)[]): string | undefined {
  const found = at(v, ...path);
  return typeof found === "string" ? found : undefined;
}

export function ofKind(objects: readonly KubeObject[], kind: string): KubeObject[] {
  return objects.filter((o) => o.kind === kind);
}

export function named(objects: readonly KubeObject[], kind: string, name: string): KubeObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}`);
  return found;
}

/** Renders a kustomization and checks the shape every object must have. */
export async function render(dir: string): Promise<KubeObject[]> {
  return parseDocuments(await kustomize(dir))
    .filter((d) => d !== null)
    .map((d, i) => asKubeObject(d, `${dir} document ${i}`));
}
