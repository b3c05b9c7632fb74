import type { FederationInput } from "../../../machines/index.js";

/** The federation the machine tests run: orders over three regions, pg-eu primary at epoch 7, 30 s budget. */
export const ordersFederation: FederationInput = {
  federation: "orders",
  members: ["pg-eu", "pg-us", "pg-ap"],
  designatedPrimary: "pg-eu",
  epoch: 7,
  rpo: { budgetMs: 30_000, warnAt: 0.5 },
  failoverMode: "automatic",
};

/** An effect that never finishes: the step stays in flight. */
export const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
