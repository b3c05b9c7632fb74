/** Reading the lab's Postgres instances in tests, and checking none is left running. */
import { readFileSync } from "node:fs";
import type { PgInstance } from "../../src/lab/cnpg/instance.js";
import { ROWS_TABLE } from "../../src/lab/cnpg/writer.js";
import { descendants } from "../../src/lab/proc.js";

/** PIDs of postgres processes this test process started and that still run. */
export function postgresDescendants(): number[] {
  return descendants(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("postgres");
    } catch {
      return false;
    }
  });
}

/** The ids the row writer committed that the instance holds. */
export async function rowIds(inst: PgInstance): Promise<Set<number>> {
  const rows = await inst.query<{ id: string }>(`SELECT id FROM ${ROWS_TABLE}`);
  return new Set(rows.map((r) => Number(r.id)));
}

/** The timeline the standby has really replayed: the one of its restartpoint after asking for one. */
export async function replayedTimeline(inst: PgInstance): Promise<number> {
  await inst.checkpoint();
  const rows = await inst.query<{ tli: number }>("SELECT timeline_id AS tli FROM pg_control_checkpoint()");
  return rows[0]?.tli ?? 0;
}
