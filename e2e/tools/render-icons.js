// Renders the app icons (PNG) from crates/courier/web/icon.svg with headless Chromium:
//   node tools/render-icons.js        (from e2e/, after npm ci)
// icon-192.png and icon-512.png are the rounded icon on a transparent background ("any");
// icon-maskable-512.png fills the whole square with the icon's blue and keeps the glyph inside
// the central 80 % safe zone, so any mask shape (circle, squircle) leaves it whole.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../lib/browser.js';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../crates/courier/web');
const svg = readFileSync(path.join(WEB, 'icon.svg'), 'utf8');

// The maskable variant: full-bleed background, the glyph scaled to 80 % around the centre.
const inner = svg.replace(/^[\s\S]*?<svg[^>]*>/, '').replace(/<\/svg>\s*$/, '').replace(/<rect[^>]*\/>/, '');
const maskable = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
  <rect width="64" height="64" fill="#2563eb"/>
  <g transform="translate(32 32) scale(0.8) translate(-32 -32)">${inner}</g>
</svg>`;

const outputs = [
  { file: 'icon-192.png', size: 192, source: svg },
  { file: 'icon-512.png', size: 512, source: svg },
  { file: 'icon-maskable-512.png', size: 512, source: maskable },
];

const browser = await launchBrowser();
try {
  for (const { file, size, source } of outputs) {
    const page = await browser.newPage({ viewport: { width: size, height: size }, deviceScaleFactor: 1 });
    const sized = source.replace('<svg ', `<svg width="${size}" height="${size}" `);
    await page.setContent(`<!doctype html><style>html,body{margin:0;background:transparent}svg{display:block}</style>${sized}`);
    const png = await page.screenshot({ omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
    writeFileSync(path.join(WEB, file), png);
    console.log(`${file}: ${size}x${size}, ${png.length} bytes`);
    await page.close();
  }
} finally {
  await browser.close();
}
