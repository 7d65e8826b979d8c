/**
 * Network namespaces for the kernel-peer tests (test/netns/) and
 * bench/dataplane: namespaces, veth pairs and processes with names unique to
 * this process, and one cleanup that removes all of them on every exit path
 * (normal end, exception, `process.exit`, SIGINT, SIGTERM, SIGHUP).
 *
 *   import { Netns, cleanupNetns, netnsSkipReason, vethPair } from '../helpers/netns.js';
 *
 *   test('iperf3 over a veth', { skip: netnsSkipReason() }, async (t) => {
 *     t.after(cleanupNetns);                            // also runs by itself on exit and on signals
 *     const client = Netns.create('cli');                // `ip netns add ztedge-<pid>-cli`, lo up
 *     const server = Netns.create('srv');
 *     vethPair(client, '10.201.0.1/24', server, '10.201.0.2/24');
 *     const iperf = server.spawn(['iperf3', '-s', '-p', '5201', '--forceflush']);
 *     await iperf.waitFor(/Server listening/, 5000);
 *     const r = await client.run(['iperf3', '-c', '10.201.0.2', '-t', '1', '-J'], { timeoutMs: 15_000 });
 *     assert.equal(r.code, 0, r.stderr);
 *     client.setResolvConf(['100.64.0.2']);          // programs started in `client` from now on resolve there
 *     await iperf.stop();
 *   });
 *
 * Why it looks like this:
 * - Everything runs inside namespaces this process created: no address,
 *   route or interface is added to the root namespace (veth ends are created
 *   directly in their namespaces), so nothing reaches the shared network and
 *   a crashed run leaves nothing routable behind.
 * - Names carry the pid (`ztedge-<pid>-<tag>`, interfaces `z<pid><tag>`, at
 *   most 15 bytes: IFNAMSIZ - 1), so concurrent runs never collide. A name
 *   with our own pid that already exists is a leftover of a dead process
 *   that had the same pid (a SIGKILLed run), and is replaced.
 * - `ip netns exec` switches namespace and then execs the program (no fork),
 *   so a spawned process's pid is the program's own: its /proc/PID/status is
 *   the daemon's RSS. Processes are spawned in their own process group and
 *   stopped as a group, so their children go too.
 * - `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over
 *   /etc/resolv.conf for the program it runs: that is how a namespace is
 *   given its own DNS server. Only programs started after the file is
 *   written see it.
 *
 * Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for the mounts) and iproute2.
 * Nothing can clean up after SIGKILL of this process: its namespaces stay
 * listed as `ztedge-<pid>-*` (`ip netns pids NAME` shows what still runs
 * there) until removed by hand or by a later process with the same pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Linux IFNAMSIZ is 16 bytes with the terminating NUL (include/uapi/linux/if.h). */
const IFNAME_MAX_BYTES = 15;
const NETNS_PREFIX = `ztedge-${process.pid}-`;
/** Output kept per spawned process, for error messages and waitFor (the tail). */
const OUTPUT_KEEP_CHARS = 64 * 1024;
const TAG_PATTERN = /^[a-z0-9]{1,8}$/;
const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_GRACE_MS = 3000;

/** The outcome of a command run to completion; `code` is null when it was killed (timeout). */
export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Killed with SIGKILL after this long (default 30 s). */
  timeoutMs?: number;
  /** Written to the program's stdin. */
  input?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
}

export interface SpawnOptions {
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

/** Namespaces, processes and files this process made and has not removed yet. */
const namespaces = new Map<string, Netns>();
const processes = new Set<NsProcess>();
const paths = new Set<string>();
let handlersInstalled = false;

/**
 * Why kernel-peer tests cannot run here, or false when they can: for
 * `test(name, { skip: netnsSkipReason() }, …)`.
 */
export function netnsSkipReason(): string | false {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root (CAP_NET_ADMIN)';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5000 });
  if (r.error !== undefined || r.status !== 0) return `iproute2 "ip netns" does not work: ${r.error?.message ?? r.stderr.trim()}`;
  return false;
}

/**
 * An interface name unique to this process: `z<pid><tag>`, at most 15 bytes
 * (so `tag` has at least 7 characters to itself with the largest pids).
 * Use it for interfaces that exist, even briefly, in the root namespace (a
 * TUN created before being moved) or whose name is a global path (the
 * wireguard-go control socket /var/run/wireguard/NAME.sock).
 */
export function ifName(tag: string): string {
  const name = `z${process.pid}${tag}`;
  if (!/^[a-z0-9]+$/.test(tag) || Buffer.byteLength(name) > IFNAME_MAX_BYTES) {
    throw new Error(`interface name ${JSON.stringify(name)}: the tag must be lower-case letters and digits, and the name at most ${IFNAME_MAX_BYTES} bytes`);
  }
  return name;
}

/** Runs `ip ARGS` (or another program) to completion in the caller's namespace; throws with its stderr on failure. */
function must(argv: string[], opts: ExecOptions = {}): string {
  const r = execSync(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: exit ${r.code ?? r.signal}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

function execSync(argv: string[], opts: ExecOptions): ExecResult {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    input: opts.input,
    env: opts.env === undefined ? process.env : { ...process.env, ...opts.env },
  });
  if (r.error !== undefined && r.status === null && r.signal === null) {
    return { code: null, signal: null, stdout: '', stderr: r.error.message };
  }
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** A network namespace of this process. Create with {@link Netns.create}. */
export class Netns {
  private resolvDir: string | undefined = undefined;

  private constructor(
    /** The `ip netns` name: `ztedge-<pid>-<tag>`. */
    readonly name: string,
  ) {}

  /**
   * `ip netns add ztedge-<pid>-<tag>` with its loopback up. `tag`: 1–8
   * lower-case letters or digits, unique within this process.
   */
  static create(tag: string): Netns {
    if (!TAG_PATTERN.test(tag)) throw new Error(`namespace tag ${JSON.stringify(tag)}: 1–8 lower-case letters or digits`);
    const name = NETNS_PREFIX + tag;
    if (namespaces.has(name)) throw new Error(`namespace ${name} exists already in this process`);
    // Same pid, so a leftover of a dead process (this one is alive): ours to replace.
    if (existsSync(`/run/netns/${name}`)) execSync(['ip', 'netns', 'del', name], {});
    installHandlers();
    must(['ip', 'netns', 'add', name]);
    const ns = new Netns(name);
    namespaces.set(name, ns);
    ns.execOk(['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** `ip netns exec NAME argv…` to completion, blocking: for short set-up commands. */
  exec(argv: string[], opts: ExecOptions = {}): ExecResult {
    return execSync(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /** As {@link exec}, but throws (with the program's stderr) unless it exits 0; returns stdout. */
  execOk(argv: string[], opts: ExecOptions = {}): string {
    return must(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /**
   * `ip netns exec NAME argv…` to completion without blocking the event
   * loop: for commands that run a while (iperf3), so the caller's pipes
   * and timers keep working meanwhile.
   */
  async run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const p = this.spawn(argv, { env: opts.env });
    p.child.stdin?.end(opts.input); // nothing more to read: a program that reads stdin sees EOF
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS);
    try {
      const { code, signal } = await p.exited;
      return { code, signal, stdout: p.stdout, stderr: p.stderr };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts a long-running program inside the namespace; it is stopped by {@link NsProcess.stop}, {@link remove} or the global cleanup. */
  spawn(argv: string[], opts: SpawnOptions = {}): NsProcess {
    return startProcess(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /**
   * Writes /etc/netns/NAME/resolv.conf: programs started in the namespace
   * from now on use these DNS servers (IPv4 or IPv6 addresses, no port:
   * resolv.conf(5) has none; port 53).
   */
  setResolvConf(nameservers: string[], options: string[] = ['timeout:2', 'attempts:2']): void {
    const dir = join('/etc/netns', this.name);
    mkdirSync(dir, { recursive: true });
    this.resolvDir = dir;
    paths.add(dir);
    const lines = nameservers.map((s) => `nameserver ${s}`);
    if (options.length > 0) lines.push(`options ${options.join(' ')}`);
    writeFileSync(join(dir, 'resolv.conf'), `# written by ztedge test/helpers/netns.ts for ${this.name}\n${lines.join('\n')}\n`);
  }

  /** Removes /etc/netns/NAME (programs already running keep the file they mounted). */
  removeResolvConf(): void {
    if (this.resolvDir === undefined) return;
    rmSync(this.resolvDir, { recursive: true, force: true });
    paths.delete(this.resolvDir);
    this.resolvDir = undefined;
  }

  /** Pids of every process inside the namespace (`ip netns pids`), ours or their children. */
  pids(): number[] {
    const r = execSync(['ip', 'netns', 'pids', this.name], { timeoutMs: 5000 });
    return r.stdout.split(/\s+/).filter((s) => s !== '').map(Number);
  }

  /**
   * Stops the processes spawned in it (SIGTERM, then SIGKILL after
   * `graceMs`), kills anything else still inside, removes its resolv.conf
   * and deletes it; its veth ends go with it.
   */
  async remove(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    await Promise.all([...processes].filter((p) => p.netns === this.name).map((p) => p.stop(graceMs)));
    this.removeSync();
  }

  /** {@link remove} without waiting: SIGKILL at once (exit handlers cannot wait). */
  removeSync(): void {
    for (const p of processes) if (p.netns === this.name) p.kill('SIGKILL');
    for (const pid of this.pids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    this.removeResolvConf();
    execSync(['ip', 'netns', 'del', this.name], { timeoutMs: 10_000 });
    namespaces.delete(this.name);
  }
}

/**
 * Joins two namespaces with a veth pair, ends named `z<pid>v<n>a` /
 * `z<pid>v<n>b` and created directly inside them (never in the root
 * namespace), addresses `aCidr` / `bCidr` (`10.201.0.1/24`), up.
 * Returns the interface names.
 */
export function vethPair(a: Netns, aCidr: string, b: Netns, bCidr: string, opts: { mtu?: number } = {}): { a: string; b: string } {
  const n = ++vethCount;
  const aName = ifName(`v${n}a`);
  const bName = ifName(`v${n}b`);
  must(['ip', 'link', 'add', aName, 'netns', a.name, 'type', 'veth', 'peer', 'name', bName, 'netns', b.name]);
  for (const [ns, dev, cidr] of [[a, aName, aCidr], [b, bName, bCidr]] as const) {
    ns.execOk(['ip', 'addr', 'add', cidr, 'dev', dev]);
    ns.execOk(['ip', 'link', 'set', dev, ...(opts.mtu !== undefined ? ['mtu', String(opts.mtu)] : []), 'up']);
  }
  return { a: aName, b: bName };
}
let vethCount = 0;

/** A long-running program started by this helper (in a namespace, or in the caller's with {@link startProcess}). */
export class NsProcess {
  /** Everything it wrote so far (the last 64 KiB of each stream). */
  stdout = '';
  stderr = '';
  /** Resolves when it has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly pid: number;

  constructor(
    readonly child: ChildProcess,
    /** The namespace it runs in, or undefined for the caller's. */
    readonly netns: string | undefined,
    readonly argv: readonly string[],
  ) {
    if (child.pid === undefined) throw new Error(`could not start ${argv.join(' ')}`);
    this.pid = child.pid;
    child.stdout?.setEncoding('utf8').on('data', (s: string) => { this.stdout = keepTail(this.stdout + s); });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { this.stderr = keepTail(this.stderr + s); });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        processes.delete(this);
        resolve({ code, signal });
      });
    });
  }

  /** True until it exits. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Waits until its output (stdout or stderr) matches `re`; throws if it
   * exits first or `ms` pass, with the tail of its output.
   */
  async waitFor(re: RegExp, ms: number): Promise<RegExpExecArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.stdout) ?? re.exec(this.stderr);
      if (m !== null) return m;
      if (!this.running) throw new Error(`${this.argv.join(' ')} exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${re}: ${this.tail()}`);
      if (Date.now() > end) throw new Error(`${this.argv.join(' ')}: no ${re} within ${ms} ms: ${this.tail()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Signals its whole process group (it leads one). */
  kill(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try { process.kill(-this.pid, signal); } catch { /* gone already */ }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    if (!this.running) return;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** The last lines it wrote, for error messages. */
  tail(chars = 600): string {
    return `stdout: ${this.stdout.slice(-chars).trim() || '(none)'}; stderr: ${this.stderr.slice(-chars).trim() || '(none)'}`;
  }
}

function keepTail(s: string): string {
  return s.length > OUTPUT_KEEP_CHARS ? s.slice(-OUTPUT_KEEP_CHARS) : s;
}

/**
 * Starts a long-running program in the caller's namespace, tracked like the
 * ones started with {@link Netns.spawn} (stopped by the global cleanup).
 * Its stdin is a pipe: close it with `p.child.stdin.end()` if it waits on it.
 */
export function startProcess(argv: string[], opts: SpawnOptions = {}): NsProcess {
  installHandlers();
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true, // its own process group, so stop() reaches its children too
    cwd: opts.cwd,
    env: opts.env === undefined ? process.env : { ...process.env, ...opts.env },
  });
  // A program that fails to start (ENOENT) still gets an 'exit'; its 'error' must not throw.
  child.on('error', () => undefined);
  const netns = argv[0] === 'ip' && argv[1] === 'netns' && argv[2] === 'exec' ? argv[3] : undefined;
  const p = new NsProcess(child, netns, argv);
  processes.add(p);
  return p;
}

/** Registers a file or folder to delete at cleanup (a daemon's control socket left by SIGKILL, a key file). */
export function trackPath(path: string): void {
  installHandlers();
  paths.add(path);
}

/**
 * Removes everything this helper made: processes (SIGTERM, then SIGKILL
 * after `graceMs`), namespaces, resolv.conf folders and tracked paths.
 * Safe to call more than once.
 */
export async function cleanupNetns(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
  await Promise.all([...processes].map((p) => p.stop(graceMs)));
  cleanupNetnsSync();
}

/** {@link cleanupNetns} without waiting (SIGKILL at once): for exit and signal handlers. */
export function cleanupNetnsSync(): void {
  for (const p of processes) p.kill('SIGKILL');
  for (const ns of [...namespaces.values()]) {
    try { ns.removeSync(); } catch { /* keep removing the rest */ }
  }
  for (const path of paths) rmSync(path, { recursive: true, force: true });
  paths.clear();
}

/**
 * On exit, and on SIGINT/SIGTERM/SIGHUP, everything is removed. A signal
 * handler that finds other listeners for the same signal leaves the exit to
 * them (the caller has its own shutdown: a bench stopping routers); alone,
 * it exits with 128 + the signal number, as the default action would.
 */
function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupNetnsSync);
  for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]] as const) {
    const onSignal = (): void => {
      cleanupNetnsSync();
      if (process.listenerCount(sig) <= 1) process.exit(128 + n);
    };
    process.on(sig, onSignal);
  }
}
