// axe-core in the page: its source is evaluated through the DevTools protocol (the app's CSP
// forbids inline scripts, and bypassing CSP would hide real violations), then run on the page.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

// Runs axe on the whole document (WCAG 2.x A/AA and best practices). Resolves to the violations.
export async function axeViolations(page, { exclude = [] } = {}) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async (excluded) => {
    const result = await window.axe.run(
      { include: [document], exclude: excluded.map((selector) => [selector]) },
      { resultTypes: ['violations'] },
    );
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    }));
  }, exclude);
}

// The serious and critical ones, formatted for an assertion message.
export async function seriousViolations(page, options) {
  const all = await axeViolations(page, options);
  // AXE_ALL=1 also prints the moderate and minor ones.
  if (process.env.AXE_ALL && all.length) console.error(`--- ${page.url()}\n${describeViolations(all)}`);
  return all.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export function describeViolations(violations) {
  return violations.map((v) => `${v.id} (${v.impact}): ${v.help}\n${
    v.nodes.map((n) => `    ${n.target}\n      ${(n.summary || '').replace(/\n/g, '\n      ')}`).join('\n')}`).join('\n');
}
