import { readFileSync } from 'node:fs';

/** utime + stime of a process, seconds (fields 14 and 15 of /proc/<pid>/stat, in clock ticks: 100 a second on Linux). */
export function cpuOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Math.round(Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * cpuOf a process and its live children (a supervisor of several Tally processes: TALLY_PROCESSES),
 * seconds; a child's time reaches its parent's own counters only once it has exited.
 */
export function cpuOfTree(pid: number): number | null {
  const own = cpuOf(pid);
  if (own === null) return null;
  return childrenOf(pid).reduce((sum, child) => sum + (cpuOfTree(child) ?? 0), own);
}

/** The pids of a process's live children (Linux), none when it cannot be read. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** VmRSS of a process, in bytes (Linux), or NaN when it cannot be read. */
export const rssOf = (pid: number): number => statusKb(pid, 'VmRSS');

/** VmHWM (the highest RSS since the process started), in bytes, or NaN. */
export const hwmOf = (pid: number): number => statusKb(pid, 'VmHWM');

function statusKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
