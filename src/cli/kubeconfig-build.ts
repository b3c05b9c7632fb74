/**
 * The work of `pgfed kubeconfig coordinator` (src/cli/kubeconfig.ts), loaded only when it runs:
 * reads each region's pgfed-coordinator token Secret through the caller's kubeconfig and returns
 * the coordinators' kubeconfig document. Every region is tried; any problem refuses the whole file,
 * naming each region and what to do.
 */
import { readFileSync } from "node:fs";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { kubeError } from "../kube/region.js";
import { CliExit, EXIT } from "./exit-codes.js";

export const SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token";
const SA_ANNOTATION = "kubernetes.io/service-account.name";

export interface CoordinatorKubeconfigInput {
  regions: readonly { region: string; context: string }[];
  /** Region → the API server URL the coordinators use instead of the caller's. */
  servers: ReadonlyMap<string, string>;
  namespace: string;
  secret: string;
  /** The caller's kubeconfig file; default $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
}

export async function buildCoordinatorKubeconfig(o: CoordinatorKubeconfigInput): Promise<Record<string, unknown>> {
  const source = new KubeConfig();
  try {
    if (o.kubeconfig !== undefined) source.loadFromFile(o.kubeconfig);
    else source.loadFromDefault();
  } catch (e) {
    throw new CliExit(EXIT.refused, `cannot load the kubeconfig ${o.kubeconfig ?? "($KUBECONFIG or ~/.kube/config)"}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const known = source.getContexts().map((c) => c.name);
  const problems: string[] = [];
  const clusters: unknown[] = [];
  const users: unknown[] = [];
  const contexts: unknown[] = [];
  for (const { region, context } of o.regions) {
    const ctx = source.getContextObject(context);
    if (!ctx) {
      problems.push(`${region}: context "${context}" is not in the kubeconfig (contexts: ${known.join(", ") || "none"})`);
      continue;
    }
    const cluster = source.getCluster(ctx.cluster);
    if (!cluster) {
      problems.push(`${region}: context "${context}" names cluster "${ctx.cluster}", which the kubeconfig does not hold`);
      continue;
    }
    // One KubeConfig per context: it is mutable.
    const kc = new KubeConfig();
    kc.loadFromString(source.exportConfig());
    kc.setCurrentContext(context);
    const where = `Secret ${o.namespace}/${o.secret}`;
    let secret;
    try {
      secret = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: o.namespace, name: o.secret });
    } catch (e) {
      const err = kubeError(region, `reading ${where}`, e);
      const hint =
        err.code === "kube.not_found"
          ? ` (apply deploy/kubernetes/overlays/${region} there first: its base creates it)`
          : err.code === "kube.forbidden"
            ? ` (context "${context}" may not read it: use an administrator's context)`
            : "";
      problems.push(`${region}: ${err.message}${hint}`);
      continue;
    }
    if (secret.type !== SERVICE_ACCOUNT_TOKEN_TYPE) {
      problems.push(`${region}: ${where} is of type ${secret.type ?? "(none)"}, not ${SERVICE_ACCOUNT_TOKEN_TYPE}`);
      continue;
    }
    const account = secret.metadata?.annotations?.[SA_ANNOTATION];
    const token = secret.data?.token ? Buffer.from(secret.data.token, "base64").toString("utf8") : "";
    if (token === "") {
      problems.push(`${region}: ${where} holds no token yet (Kubernetes' token controller fills it for the ServiceAccount in its ${SA_ANNOTATION} annotation, here "${account ?? "(none)"}"); try again in a few seconds`);
      continue;
    }
    let caData = secret.data?.["ca.crt"] ?? cluster.caData;
    if (caData === undefined && cluster.caFile !== undefined) {
      try {
        caData = readFileSync(cluster.caFile).toString("base64");
      } catch (e) {
        problems.push(`${region}: cannot read the cluster CA ${cluster.caFile}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
    }
    if (caData === undefined && !cluster.skipTLSVerify) {
      problems.push(`${region}: no CA for ${cluster.server} (neither ${where} nor the kubeconfig has one)`);
      continue;
    }
    const server = o.servers.get(region) ?? cluster.server;
    clusters.push({ name: region, cluster: { server, ...(caData !== undefined ? { "certificate-authority-data": caData } : { "insecure-skip-tls-verify": true }) } });
    users.push({ name: `${account ?? "pgfed-coordinator"}@${region}`, user: { token } });
    contexts.push({ name: region, context: { cluster: region, user: `${account ?? "pgfed-coordinator"}@${region}` } });
  }
  if (problems.length > 0) throw new CliExit(EXIT.refused, `no kubeconfig written:\n  ${problems.join("\n  ")}`);
  return { apiVersion: "v1", kind: "Config", preferences: {}, "current-context": o.regions[0]?.region ?? "", clusters, users, contexts };
}
