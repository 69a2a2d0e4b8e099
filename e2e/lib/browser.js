// Headless Debian chromium through playwright-core; one context per person.
import { chromium } from 'playwright-core';

const LAUNCH = {
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
};

export function launchBrowser() {
  return chromium.launch(LAUNCH);
}

// A browser with a real (non-incognito) profile in `userDataDir`, as one context; for what
// Chromium refuses to incognito profiles, such as reporting a page installable.
export function launchProfile(userDataDir, options = {}) {
  return chromium.launchPersistentContext(userDataDir, { ...LAUNCH, ...options });
}

// Signs `username` in through the access page's dev-login form.
// `init`: a script every page of the context runs first (e.g. to take a browser feature away).
export async function signIn(browser, baseURL, username, { viewport = { width: 1024, height: 768 }, userAgent, init } = {}) {
  const context = await browser.newContext({ baseURL, viewport, userAgent });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  trackProblems(page);
  await page.goto('/');
  const form = page.getByRole('form', { name: 'Development sign-in' });
  await form.getByLabel('Username').fill(username);
  await form.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Conversations' }).waitFor();
  return { context, page };
}

// Signs in with a password through the access page's sign-in form.
export async function passwordSignIn(page, username, password) {
  const form = page.getByRole('form', { name: 'Sign in with a password' });
  await form.getByLabel('Username').fill(username);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Sign in' }).click();
}

// Collects console errors and CSP violations so tests can assert there were none.
export function trackProblems(page) {
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(msg.text());
  });
  page.on('pageerror', (err) => page.problems.push(String(err)));
  return page;
}
