/** Reading a process's CPU time and memory from /proc (Linux), and a latency histogram. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clockTicks = 0;
/** clock ticks per second of /proc/<pid>/stat's times (getconf CLK_TCK; 100 on Linux) */
export function clkTck(): number {
  if (clockTicks === 0) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** user + system CPU seconds of every thread of the process (of each process, summed) so far */
export function cpuSeconds(pid: number | number[]): number {
  if (Array.isArray(pid)) return pid.reduce((sum, p) => sum + cpuSeconds(p), 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after "(comm)": state is field 3; utime and stime are fields 14 and 15
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / clkTck();
}

/** user and system CPU seconds so far, apart (of each process, summed) */
export function cpuSplit(pid: number | number[]): { user: number; system: number } {
  const out = { user: 0, system: 0 };
  for (const p of Array.isArray(pid) ? pid : [pid]) {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.user += Number(rest[11]) / clkTck();
    out.system += Number(rest[12]) / clkTck();
  }
  return out;
}

/** resident set size in bytes (VmRSS; of each process, summed) */
export function rssBytes(pid: number | number[]): number {
  if (Array.isArray(pid)) return pid.reduce((sum, p) => sum + rssBytes(p), 0);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * The machine's CPU time so far, from /proc/stat's "cpu" line, in clock ticks: all of it, and the
 * "steal" part (time a virtual machine's CPUs wanted to run but the hypervisor ran something else).
 */
export function machineCpuTicks(cpu: number | null = null): { total: number; steal: number; idle: number } {
  try {
    const name = cpu === null ? 'cpu' : `cpu${cpu}`;
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) return { total: 0, steal: 0, idle: 0 };
    // user nice system idle iowait irq softirq steal
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0, idle: (f[3] ?? 0) + (f[4] ?? 0) };
  } catch {
    return { total: 0, steal: 0, idle: 0 };
  }
}

export function cpuModel(): string {
  try {
    const m = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1]!.trim() : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Latencies in 10 µs buckets up to 2 s; beyond that they count in the last bucket. */
export class Histogram {
  private static readonly RES_MS = 0.01;
  private readonly buckets = new Uint32Array(200_001);
  count = 0;
  sum = 0;
  max = 0;

  add(ms: number): void {
    const i = Math.min(this.buckets.length - 1, Math.max(0, Math.round(ms / Histogram.RES_MS)));
    this.buckets[i]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** the latency (ms) below which a fraction q of the samples lie */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return i * Histogram.RES_MS;
    }
    return this.max;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : NaN;
  }

  reset(): void {
    this.buckets.fill(0);
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }
}
