/**
 * The CNPG versions pgfed needs (CNPG.md, "Versions"), and what pgfed can tell at run time: the
 * demotion token carries the `operatorVersion` of the CNPG that wrote it, the only version a
 * Cluster object states.
 *   - 1.24: spec.replica.primary/source/promotionToken, status.demotionToken (the distributed topology).
 *   - 1.26: the Barman Cloud plugin (`plugins[].isWALArchiver`) the example manifests archive with.
 *   - 1.28.4 / 1.29.2 / 1.30.0: the fix for CNPG issue #11074 (an empty demotionToken after a requeue).
 */
export const CNPG_MINIMUM = "1.26.0";
export const TOKEN_LOSS_FIXED_IN = ["1.28.4", "1.29.2", "1.30.0"] as const;

type Version = readonly [number, number, number];

/** "1.28.3", "v1.30.0", "1.27.0-rc1" → [1, 28, 3]; anything else (the lab's "pgfed-lab-1.0") → undefined. */
export function parseCnpgVersion(text: string): Version | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(text.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function below(a: Version, b: Version): boolean {
  for (let i = 0; i < 3; i++) if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) < (b[i] as number);
  return false;
}

/** Whether this CNPG has the token-loss bug: below 1.28.4 on 1.28, below 1.29.2 on 1.29, anything before 1.28. */
export function hasTokenLossBug(v: Version): boolean {
  if (v[0] !== 1) return v[0] < 1;
  if (v[1] < 28) return true;
  if (v[1] === 28) return below(v, [1, 28, 4]);
  if (v[1] === 29) return below(v, [1, 29, 2]);
  return false;
}

/** What on-call should know about the CNPG that wrote a token; [] when it is recent enough or not a CNPG version. */
export function cnpgVersionWarnings(operatorVersion: string): string[] {
  const v = parseCnpgVersion(operatorVersion);
  if (!v) return [];
  const out: string[] = [];
  const min = parseCnpgVersion(CNPG_MINIMUM) as Version;
  if (below(v, min)) out.push(`CNPG ${operatorVersion} is older than ${CNPG_MINIMUM}, the oldest pgfed supports (the Barman Cloud plugin archiving needs 1.26)`);
  if (hasTokenLossBug(v)) out.push(`CNPG ${operatorVersion} can lose the demotion token of a switchover (CNPG issue #11074, fixed in ${TOKEN_LOSS_FIXED_IN.join(", ")}); pgfed then stops the switchover for an operator`);
  return out;
}
