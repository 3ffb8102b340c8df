// Validates the AsyncAPI document with the AsyncAPI CLI:
//   npm run validate                      (schemas/asyncapi.json of this repository)
//   npm run validate -- OTHER.json --diagnostics-format json
// Errors and warnings fail (exit 1); information and hints are printed but pass, e.g. the
// notice that a newer AsyncAPI version than the document's 3.0.0 exists.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const cliPackage = require.resolve('@asyncapi/cli/package.json');
const cliBin = join(dirname(cliPackage), require(cliPackage).bin.asyncapi);

const args = process.argv.slice(2);
const documentGiven = args.length > 0 && !args[0].startsWith('-');
const document = documentGiven ? args.shift() : resolve(here, '../../schemas/asyncapi.json');

const env = {
  ...process.env,
  // Usage metrics off, and read from this folder instead of being created in $HOME.
  ASYNCAPI_METRICS_CONFIG_PATH: join(here, 'analytics.json'),
  // No background look-up of newer CLI versions.
  ASYNCAPI_SKIP_NEW_VERSION_CHECK: 'true',
  // The CLI loads node-config without a config folder; its warnings say nothing about the document.
  SUPPRESS_NO_CONFIG_WARNING: '1',
  SUPPRESS_STRICTNESS_CHECK: '1',
};

const run = spawnSync(
  process.execPath,
  [cliBin, 'validate', document, '--fail-severity', 'warn', ...args],
  { stdio: 'inherit', env, cwd: here },
);
if (run.error) {
  console.error(`error: cannot run the AsyncAPI CLI: ${run.error.message}`);
  process.exit(2);
}
process.exit(run.status ?? 1);
