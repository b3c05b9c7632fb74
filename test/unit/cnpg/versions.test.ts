import { describe, expect, it } from "vitest";
import { cnpgVersionWarnings, hasTokenLossBug, parseCnpgVersion } from "../../../src/cnpg/index.js";

describe("CNPG versions pgfed can tell from a demotion token", () => {
  it("parses CNPG's version strings and nothing else", () => {
    expect(parseCnpgVersion("1.28.3")).toEqual([1, 28, 3]);
    expect(parseCnpgVersion("v1.30.0")).toEqual([1, 30, 0]);
    expect(parseCnpgVersion("1.27.0-rc1")).toEqual([1, 27, 0]);
    expect(parseCnpgVersion("pgfed-lab-1.0")).toBeUndefined();
    expect(parseCnpgVersion("")).toBeUndefined();
  });

  it("knows which releases have the token-loss bug (#11074)", () => {
    const bug = (v: string) => hasTokenLossBug(parseCnpgVersion(v) as [number, number, number]);
    expect(["1.26.1", "1.27.3", "1.28.0", "1.28.3", "1.29.0", "1.29.1"].map(bug)).toEqual([true, true, true, true, true, true]);
    expect(["1.28.4", "1.28.10", "1.29.2", "1.30.0", "1.31.1"].map(bug)).toEqual([false, false, false, false, false]);
  });

  it("warns about versions below the minimum and with the bug, and stays quiet otherwise", () => {
    expect(cnpgVersionWarnings("1.25.2")).toHaveLength(2);
    expect(cnpgVersionWarnings("1.28.1")).toEqual([expect.stringContaining("#11074")]);
    expect(cnpgVersionWarnings("1.30.0")).toEqual([]);
    expect(cnpgVersionWarnings("pgfed-lab-1.0")).toEqual([]);
  });
});
