// The service worker's precache list must name every file of the web app, or offline reloads break.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../crates/courier/web');

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(path.join(dir, entry.name)) : [path.join(dir, entry.name)]);
}

it('sw.js precaches every file in crates/courier/web', () => {
  const source = readFileSync(path.join(WEB, 'sw.js'), 'utf8');
  const list = source.match(/const SHELL = \[([\s\S]*?)\];/)[1];
  const cached = new Set([...list.matchAll(/'([^']+)'/g)].map((m) => m[1]));
  const files = walk(WEB)
    .map((file) => `/${path.relative(WEB, file).split(path.sep).join('/')}`)
    .filter((file) => file !== '/sw.js');
  assert.deepEqual(files.filter((f) => !cached.has(f)).sort(), [], 'files missing from the precache list');
  const stale = [...cached].filter((f) => f !== '/' && !files.includes(f));
  assert.deepEqual(stale, [], 'precache entries with no file');
});
