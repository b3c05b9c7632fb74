import type { AdmissionHook } from "./types.js";

export const cnpgAdmission: AdmissionHook = () => [];
