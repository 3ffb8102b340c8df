// Build step 1 of 2 (then tsc): TypeScript types from the gate's published JSON Schemas.
//
// - build/generated/*.d.ts: the types of the application (what we send) and of the decision (what
//   we read), generated with json-schema-to-typescript. Declarations only, so tsc emits nothing
//   for them; the code imports them with `import type`.
// - dist/schemas/permit-application.v1.schema.json: the schema itself, which the client checks an
//   application against at run time (ajv), so that dist/ does not depend on the repository layout.
//
// The schemas are read from the repository's schemas/ folder, or from SCHEMAS_DIR when set (for a
// copy of this example outside the repository).
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileFromFile } from 'json-schema-to-typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const schemasDir = process.env.SCHEMAS_DIR
  ? resolve(process.env.SCHEMAS_DIR)
  : resolve(root, '../../schemas');
const generatedDir = join(root, 'build', 'generated');
const distDir = join(root, 'dist');

// The root type of each schema gets a plain name instead of one derived from its title.
const targets = [
  { file: 'permit-application.v1.schema.json', id: 'urn:ptsp-gate:schema:permit-application.v1', name: 'PermitApplication' },
  { file: 'compliance-decision.v1.schema.json', id: 'urn:ptsp-gate:schema:compliance-decision.v1', name: 'ComplianceDecision' },
];

await rm(generatedDir, { recursive: true, force: true });
await rm(distDir, { recursive: true, force: true });
await mkdir(generatedDir, { recursive: true });
await mkdir(join(distDir, 'schemas'), { recursive: true });

for (const { file, id, name } of targets) {
  const source = join(schemasDir, file);
  const ts = await compileFromFile(source, {
    bannerComment: `/* Generated from ${file} by scripts/generate.mjs at build time. Do not edit. */`,
    // Inbound payloads may carry fields the schema does not know; the types list only the known
    // ones, so a misspelt field name is a compile error.
    additionalProperties: false,
    customName: (schema) => (schema.$id === id ? name : undefined),
    cwd: schemasDir,
  });
  await writeFile(join(generatedDir, file.replace(/\.schema\.json$/, '.d.ts')), ts);
}
await copyFile(
  join(schemasDir, 'permit-application.v1.schema.json'),
  join(distDir, 'schemas', 'permit-application.v1.schema.json'),
);
console.log(`types generated in ${generatedDir} from ${schemasDir}`);
