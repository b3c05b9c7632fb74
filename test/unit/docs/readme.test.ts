import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { README, renderReadme } from "../../../scripts/gen-docs.js";

describe("README", () => {
  it("embeds the current state-machine diagrams and alerts table (run `npm run docs` when this fails)", () => {
    const current = readFileSync(README, "utf8");
    expect(renderReadme(current)).toBe(current);
  });

  it("gives exactly the two commands for a fresh machine", () => {
    const current = readFileSync(README, "utf8");
    const block = current.slice(current.indexOf("## Two commands"), current.indexOf("## A 5-minute tour"));
    expect(block).toContain("npm run lab");
    expect(block).toContain("npm test");
  });
});
