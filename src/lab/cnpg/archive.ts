/**
 * The lab's WAL archive: one directory per Cluster stands in for the Barman Cloud object store.
 * Postgres runs archive_command once per segment, so both commands are small POSIX shell scripts
 * (a Node process per segment would cost ~50 ms each and slow every switchover).
 */
import { chmod, chown, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PgfedError } from "../../errors.js";
import { postgresUser, run } from "../proc.js";

export const ARCHIVE_SCRIPT = "archive-wal.sh";
export const RESTORE_SCRIPT = "restore-wal.sh";
/** Where the archive script leaves the message of its last failure (in the scripts' directory). */
export const ARCHIVE_ERROR_FILE = "archive-last-error";

// Usage: archive-wal.sh <archive dir> <path of the file> <name in the archive>
// Atomic (temp name, fsync, hard link) and never overwrites: an existing file with the same
// content is success (Postgres retries after a crash), a different one is a failure. A failure's
// message also goes to ARCHIVE_ERROR_FILE next to the script: CNPG's wal-archive reports its error
// text as the ContinuousArchiving condition message (internal/cmd/manager/walarchive/cmd.go).
const ARCHIVE_SH = `#!/bin/sh
set -u
dir="$1"; src="$2"; name="$3"
dst="$dir/$name"
errfile="$(dirname "$0")/${ARCHIVE_ERROR_FILE}"
fail() {
  echo "$1" >&2
  echo "$1" > "$errfile" 2>/dev/null
  exit 1
}
if [ -f "$dst" ]; then
  if cmp -s "$src" "$dst"; then exit 0; fi
  fail "archive-wal: $name is already archived in $dir with different content"
fi
tmp="$dir/.$name.$$.tmp"
out=$(cp "$src" "$tmp" 2>&1) || { rm -f "$tmp"; fail "archive-wal: cannot copy $name into $dir: $out"; }
out=$(sync "$tmp" 2>&1) || { rm -f "$tmp"; fail "archive-wal: cannot sync $name in $dir: $out"; }
if ln "$tmp" "$dst" 2>/dev/null; then
  rm -f "$tmp"; sync "$dir"; exit 0
fi
rm -f "$tmp"
# Lost a race with another archiver: fine only if it wrote the same bytes.
if cmp -s "$src" "$dst"; then exit 0; fi
fail "archive-wal: $name appeared in $dir with different content"
`;

// Usage: restore-wal.sh <source archive dir> <wal file name> <destination path>
// Serves <walfile>.partial when <walfile> is absent: the demoted primary uploads the segment
// holding its shutdown checkpoint only as .partial (CNPG.md), and archive-only replicas need it.
const RESTORE_SH = `#!/bin/sh
set -u
dir="$1"; name="$2"; dst="$3"
if [ -f "$dir/$name" ]; then src="$dir/$name"
elif [ -f "$dir/$name.partial" ]; then src="$dir/$name.partial"
else exit 1
fi
cp "$src" "$dst.restoring" && mv "$dst.restoring" "$dst"
`;

/** Writes both scripts into `dir` (executable by the postgres user). */
export async function writeArchiveScripts(dir: string): Promise<{ archiveScript: string; restoreScript: string }> {
  const archiveScript = join(dir, ARCHIVE_SCRIPT);
  const restoreScript = join(dir, RESTORE_SCRIPT);
  await writeFile(archiveScript, ARCHIVE_SH);
  await writeFile(restoreScript, RESTORE_SH);
  await chmod(archiveScript, 0o755);
  await chmod(restoreScript, 0o755);
  return { archiveScript, restoreScript };
}

/** Creates an archive directory owned by the postgres user (when we are root). */
export async function ensureArchiveDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chownToPostgres(dir);
}

/** Hands `path` to the postgres user when we run as root; no-op otherwise. */
export async function chownToPostgres(path: string): Promise<void> {
  const ids = postgresUser();
  if (ids) await chown(path, ids.uid, ids.gid);
}

/** Archives one file with the same script Postgres uses, so the same rules apply (no overwrite). */
export async function archiveFile(archiveScript: string, archiveDir: string, path: string, name: string): Promise<void> {
  try {
    await run(archiveScript, [archiveDir, path, name], { asPostgres: true, timeoutMs: 30_000 });
  } catch (e) {
    throw new PgfedError("lab.archive_failed", `while archiving ${name} into ${archiveDir}: ${(e as Error).message}`, { archiveDir, name }, { cause: e });
  }
}

/** Names of the files in an archive directory (temp files excluded), sorted. */
export async function listArchive(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith(".")).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}
