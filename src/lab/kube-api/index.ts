/** The lab's Kubernetes API server stand-in (one per region) and its kubeconfig writer. */
export { startKubeApi, type FaultSwitch, type KubeApiOptions, type KubeApiServer } from "./server.js";
export { writeKubeconfig, kubeconfigDocument, type KubeconfigRegion } from "./kubeconfig.js";
export { KubeStore, type DeleteOptions, type ListOptions, type ListResult, type ObjectRef, type PatchType, type StatusInput, type StoreListener, type SubscribeFilter, type WriteOptions } from "./store.js";
export { KubeApiError, type KubeStatus, type StatusReason } from "./status.js";
export { cnpgAdmission } from "./cnpg-admission.js";
export { RESOURCES, type ResourceDef } from "./resources.js";
export type { KubeObjectInput } from "./objects.js";
export type {
  AdmissionCause,
  AdmissionHook,
  AdmissionOperation,
  Faults,
  KubeObject,
  ObjectMeta,
  ResourceName,
  StoreEvent,
  TokenIdentity,
  TokenRule,
  WatchEventType,
} from "./types.js";
