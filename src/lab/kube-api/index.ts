/** The lab's Kubernetes API server stand-in (one per region) and its kubeconfig writer. */
export { startKubeApi, type FaultSwitch, type KubeApiOptions, type KubeApiServer } from "./server.js";
export { writeKubeconfig, kubeconfigDocument, type KubeconfigRegion } from "./kubeconfig.js";
export { IN_PROCESS_MANAGER, KubeStore, type ApplyOptions, type DeleteOptions, type FieldValidation, type ListOptions, type ListResult, type ObjectRef, type PatchType, type StatusInput, type StoreListener, type SubscribeFilter, type WriteOptions } from "./store.js";
export { KubeApiError, type KubeStatus, type StatusReason } from "./status.js";
export { RbacPolicy, RbacError, serviceAccountUser, serviceAccountGroups, type PolicyRule, type RequestAttributes, type Subject } from "./rbac.js";
export { cnpgAdmission, cnpgValidate, CNPG_VALIDATING_WEBHOOK } from "./cnpg-admission.js";
export { FieldSet, pathString, type FieldPath } from "./field-set.js";
export { managerName, type ManagedFieldsEntry } from "./managed-fields.js";
export { CLUSTER_SCHEMA, CLUSTER_PRINTER_COLUMNS } from "./cluster-schema.js";
export { RESOURCES, type ResourceDef } from "./resources.js";
export type { KubeObjectInput } from "./objects.js";
export type {
  AdmissionCause,
  AdmissionDenial,
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
