/** `ztedge controller`: runs the controller in the foreground until SIGINT/SIGTERM. */
import { startController } from '../controller/index.js';
import { EdgeError } from '../errors.js';
import { createRootLogger } from '../log/index.js';
import { parse, str, untilStopSignal, type Command } from './command.js';

const HELP = `Usage: ztedge controller --data DIR [options]

Runs the controller: PKI, identities, enrollment and the management/client
REST APIs over HTTPS. The first start creates the PKI under DIR/pki and an
admin named "admin"; its password is read from --admin-password-file or
generated into DIR/admin.password (mode 0600).

Options:
  --data DIR                    data folder (store, PKI, admin password)   [required]
  --listen HOST:PORT            address to serve on                        [127.0.0.1:1280]
  --advertise HOST:PORT         address clients use (enrollment JWT "iss") [= --listen]
  --admin-password-file FILE    first admin's password (first start only)
  --enrollment-minutes N        lifetime of one-time enrollment tokens     [180]
  --cert-days N                 validity of issued identity certificates   [365]
  --policy-offline-hours N      how long routers keep authorizing from their signed policy
                                without hearing from this controller; past it they fail
                                closed (unless a router is configured to keep it)  [72]
  --log-level LEVEL             fatal|error|warn|info|debug|trace          [info]
  -h, --help                    this help

Example:
  ztedge controller --data /var/lib/ztedge/controller --listen 0.0.0.0:1280 --advertise ctrl.plant.example:1280`;

export const controllerCommand: Command = {
  name: 'controller',
  summary: 'run the controller (PKI, identities, enrollment, REST API)',
  help: HELP,
  async run(argv) {
    const { values } = parse(argv, {
      data: { type: 'string' }, listen: { type: 'string' }, advertise: { type: 'string' },
      'admin-password-file': { type: 'string' }, 'enrollment-minutes': { type: 'string' }, 'cert-days': { type: 'string' },
      'log-level': { type: 'string' }, 'policy-offline-hours': { type: 'string' },
    }, 'controller');
    if (values.help === true) { process.stdout.write(HELP + '\n'); return 0; }
    const dataDir = str(values.data);
    if (dataDir === undefined) { process.stderr.write('ztedge controller: --data DIR is required\nRun "ztedge controller --help" for usage.\n'); return 2; }
    const log = createRootLogger({ level: (str(values['log-level']) ?? 'info') as 'info' });
    const minutes = positiveNumber(str(values['enrollment-minutes']), '--enrollment-minutes');
    const days = positiveNumber(str(values['cert-days']), '--cert-days');
    const offlineHours = positiveNumber(str(values['policy-offline-hours']), '--policy-offline-hours');
    const ctrl = await startController({
      dataDir,
      listen: str(values.listen) ?? '127.0.0.1:1280',
      advertise: str(values.advertise),
      adminPasswordFile: str(values['admin-password-file']),
      enrollmentDurationMs: minutes === undefined ? undefined : minutes * 60_000,
      certValidityDays: days,
      policyOfflineWindowMs: offlineHours === undefined ? undefined : offlineHours * 3600_000,
      log,
    });
    await untilStopSignal(log);
    await ctrl.close();
    log.flush();
    return 0;
  },
};

function positiveNumber(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new EdgeError('ERR_USAGE', `${flag} must be a positive number, got "${v}"`);
  return n;
}
