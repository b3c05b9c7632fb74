/** The API served over a test lab's real coordinator, and the `pgfed` CLI driving it in-process. */
import { parseTokenFile, tokenLine, type Role } from "../../src/api/auth.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { runCli } from "../../src/cli/program.js";
import { renderRunbook } from "../../src/cli/runbook-document.js";
import type { E2E } from "../e2e/fixture.js";

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

export interface LabApi {
  api: ApiServer;
  /** Runs `pgfed <args> --server <api> --token <token>` as a script would (no terminal). */
  cli(args: string[]): Promise<CliRun>;
  close(): Promise<void>;
}

export async function serveLabApi(e: E2E, who: { name: string; role: Role; token: string }): Promise<LabApi> {
  const api = await startApiServer({ service: e.plane.coordinator, listen: "127.0.0.1:0", tokens: parseTokenFile(tokenLine(who.name, who.role, who.token)), log: e.log, renderRunbook });
  return {
    api,
    async cli(args) {
      let out = "";
      let err = "";
      const io = { out: (t: string) => (out += t), err: (t: string) => (err += t), isTTY: false, env: {}, cwd: e.dir };
      const code = await runCli([...args, "--server", api.url, "--token", who.token], io);
      return { code, out, err };
    },
    close: () => api.close(),
  };
}
