/** Debian's headless Chromium through playwright-core, off the network, its processes in the PID registry. */
import { readFileSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { descendants, recordPid } from "../../src/lab/proc.js";

export async function launchChromium(): Promise<Browser> {
  // The flags keep Chromium off the network (this machine's is closed) and runnable as root.
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  // A worker killed on a timeout leaves no Chromium behind: the global teardown stops these by PID.
  for (const pid of descendants(process.pid)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("chromium")) recordPid(pid);
    } catch {
      // gone meanwhile
    }
  }
  return browser;
}
