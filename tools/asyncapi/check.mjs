// Validates docs/asyncapi.yaml with the official AsyncAPI parser: errors fail, diagnostics are printed.
import { Parser } from '@asyncapi/parser';
import fs from 'node:fs';
const parser = new Parser();
const { document, diagnostics } = await parser.parse(fs.readFileSync(process.argv[2], 'utf8'), { source: process.argv[2] });
const errors = diagnostics.filter(d => d.severity === 0);
for (const d of diagnostics) console.log(`${['error','warning','info','hint'][d.severity]} ${d.code} ${JSON.stringify(d.path)} ${d.message}`);
if (!document || errors.length) { console.error(`${errors.length} error(s)`); process.exit(1); }
console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ${document.operations().length} operations`);
