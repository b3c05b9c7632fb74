// The CNPG room's public surface: other folders import from here, never from the files inside.
export * from "./cluster.js";
export * from "./readers.js";
export * from "./token.js";
export * from "./patches.js";
export * from "./reclone.js";
export * from "./versions.js";
