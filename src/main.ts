/**
 * ztedge: one binary, every role. Dispatches `ztedge <command>` and turns
 * errors into one clear line on stderr with a stable code and exit status.
 */
import { isEdgeError } from './errors.js';
import { VERSION } from './version.js';
import type { Command } from './cli/command.js';

/**
 * Commands are loaded on use: a router or `ztedge enroll` on a small device
 * never evaluates the controller's web framework or store (measured: ~70 MB
 * RSS for `--help` when everything loaded eagerly).
 */
interface CommandEntry { name: string; summary: string; load: () => Promise<Command> }

const COMMANDS: CommandEntry[] = [
  { name: 'quickstart', summary: 'a controller plus an enrolled demo identity, on this machine', load: async () => (await import('./cli/quickstart.js')).quickstartCommand },
  { name: 'controller', summary: 'run the controller (PKI, identities, enrollment, REST API)', load: async () => (await import('./cli/controller.js')).controllerCommand },
  { name: 'router', summary: 'run a router (links, circuits, proxy interception, hosting)', load: async () => (await import('./cli/router.js')).routerCommand },
  { name: 'enroll', summary: 'enroll this device from a one-time token (key made locally or in a TPM/HSM)', load: async () => (await import('./cli/enroll.js')).enrollCommand },
  { name: 'edge', summary: 'manage identities, CAs, routers, services and policies (login, create, list, update, delete)', load: async () => (await import('./cli/edge/index.js')).edgeCommand },
];

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: ztedge <command> [options]',
    '',
    'A zero-trust overlay for OT and IoT: controller, router and tunneler in one binary.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    `  ${'version'.padEnd(width)}  print the version`,
    '',
    'Run "ztedge <command> --help" for the options of a command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === 'version' || name === '--version' || name === '-v') {
    process.stdout.write(`ztedge ${VERSION} (node ${process.version})\n`);
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (entry === undefined) {
    process.stderr.write(`ztedge: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  try {
    const command = await entry.load();
    return await command.run(rest);
  } catch (err) {
    if (isEdgeError(err)) {
      process.stderr.write(`ztedge ${name}: ${err.message} [${err.code}]\n`);
      return err.code === 'ERR_USAGE' ? 2 : 1;
    }
    process.stderr.write(`ztedge ${name}: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

// `ztedge edge list identities | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => { process.stderr.write(`ztedge: ${String(err)}\n`); process.exitCode = 1; },
);
