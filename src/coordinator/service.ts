/**
 * The coordinator's side of the API contract (src/api/contract.ts, which the API imports instead
 * of this file): decisions on a service request that need only the federation's view.
 */
import type { FederationView } from "../api/contract.js";

/**
 * Why naming `primary` must be refused, or null. The operator fixed things by hand; pgfed checks
 * what it can see, so that automation does not resume around a wrong designation: the member must
 * be observed, reachable, as an unfenced primary cluster, and no other member as one.
 */
export function resolveRefusal(view: FederationView, primary: string, awaitsOperator: boolean, ineligible: boolean): string | null {
  const doing = `refusing to resolve ${view.name} with ${primary} as primary`;
  if (!awaitsOperator) return `${doing}: nothing requires an operator (${view.operation ? `${view.operation.kind} ${view.operation.id} is ${view.operation.state}` : `the designated primary is ${view.designatedPrimary ?? "none"}`})`;
  const m = view.members.find((x) => x.name === primary);
  if (!m) return `${doing}: not a member of the federation`;
  if (ineligible) return `${doing}: it has diverged or waits to be fenced (rejoin it first)`;
  if (!m.reachable) return `${doing}: it is not reachable (no current observation from its agent)`;
  if (m.role !== "primary") return `${doing}: it is not a primary cluster (CNPG reports role ${m.role}); patch spec.replica.primary first`;
  if (m.fenced) return `${doing}: it is fenced; unfence it first so that it serves as the primary`;
  const others = view.members.filter((x) => x.name !== primary && x.role === "primary" && !x.fenced);
  if (others.length > 0) return `${doing}: ${others.map((x) => x.name).join(", ")} ${others.length === 1 ? "is" : "are"} also an unfenced primary cluster; fence or demote ${others.length === 1 ? "it" : "them"} first`;
  return null;
}
