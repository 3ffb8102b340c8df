// Reading the application file and checking it against the published JSON Schema.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { PermitApplication } from '../build/generated/permit-application.v1';

/** The input cannot be sent: exit code 2. */
export class InputError extends Error {}

export interface LoadedApplication {
  /** The file's bytes: sent unchanged as the record value. */
  bytes: Buffer;
  /** The event's `data`, as parsed from the file. */
  data: unknown;
  /** `application_id`, when the file has one (always, once validated). */
  applicationId: string | null;
  /** `employer.nib`, the record key, when the file has one. */
  nib: string | null;
  /** `action`, when the file has one: NEW or RENEWAL once validated. */
  action: string | null;
}

// Copied next to the compiled code by scripts/generate.mjs.
const SCHEMA_FILE = join(__dirname, 'schemas', 'permit-application.v1.schema.json');

let validator: ValidateFunction<PermitApplication> | undefined;

function compileValidator(): ValidateFunction<PermitApplication> {
  if (validator === undefined) {
    const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as object;
    // strictTypes off: the schema's RENEWAL rule (if/then) names `required` without repeating
    // `type: object`, which is valid JSON Schema that ajv's strict mode would only warn about.
    const ajv = new Ajv2020({ allErrors: true, strictTypes: false });
    addFormats(ajv);
    validator = ajv.compile<PermitApplication>(schema);
  }
  return validator;
}

function describe(errors: ErrorObject[]): string {
  // "must match "then" schema" only repeats the error found inside the then-branch.
  const relevant = errors.filter((e) => e.keyword !== 'if');
  const shown = relevant
    .slice(0, 5)
    .map((e) => {
      const where = e.instancePath || '(root)';
      const extra =
        e.keyword === 'additionalProperties' ? ` '${String(e.params.additionalProperty)}'` : '';
      return `${where} ${e.message ?? 'is invalid'}${extra}`;
    });
  const more = relevant.length > shown.length ? ` (and ${relevant.length - shown.length} more)` : '';
  return shown.join('; ') + more;
}

function stringAt(value: unknown, ...path: string[]): string | null {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return null;
    current = (current as Record<string, unknown>)[key];
  }
  return typeof current === 'string' ? current : null;
}

/**
 * Reads FILE as the event's data. With `validate`, the data must be a valid permit application
 * (the gate's JSON Schema); without it, anything that parses as JSON is sent as it is.
 */
export function loadApplication(file: string, validate: boolean): LoadedApplication {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : String(code ?? err);
    throw new InputError(`cannot read application file ${file}: ${why}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InputError(`application file ${file} is not JSON: ${(err as Error).message}`);
  }
  if (validate) {
    const check = compileValidator();
    if (!check(data)) {
      throw new InputError(
        `application file ${file} is not a valid permit application: ${describe(check.errors ?? [])}`,
      );
    }
    return {
      bytes,
      data,
      applicationId: data.application_id,
      nib: data.employer.nib,
      action: data.action,
    };
  }
  return {
    bytes,
    data,
    applicationId: stringAt(data, 'application_id'),
    nib: stringAt(data, 'employer', 'nib'),
    action: stringAt(data, 'action'),
  };
}
