import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The package's root directory: the nearest directory above this module that holds pgfed's
 * package.json. The sources (src/version.ts) and the compiled build (dist/…) sit at different
 * depths, so the path is found, not assumed.
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      if (typeof pkg === "object" && pkg !== null && "name" in pkg && pkg.name === "pgfed") return dir;
    } catch {
      // no package.json here: go up
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`pgfed's package.json not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The package version, read once from pgfed's package.json. */
export const VERSION: string = (() => {
  try {
    const pkg: unknown = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8"));
    return typeof pkg === "object" && pkg !== null && "version" in pkg && typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
})();
