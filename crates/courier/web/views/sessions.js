import { api } from '../api.js';
import { h, icon } from '../dom.js';
import { describeDevice, fullTime, lastActive } from '../format.js';
import { setPageTitle } from '../title.js';

// Where the person is signed in: one row per session, "Sign out" for each other one, and
// "Sign out everywhere" behind a confirmation dialog.
export function mountSessions(root, { signOutEverywhere }) {
  setPageTitle('Sessions');
  let alive = true;
  const rows = new Map(); // session id -> { session, li, active }

  const status = h('p', { class: 'muted list-status', role: 'status', text: 'Loading sessions…' });
  const list = h('ul', { class: 'session-list', 'aria-label': 'Sessions' });
  const everywhere = h('button', { type: 'button', class: 'button button-danger', hidden: true }, icon('logout'), h('span', { text: 'Sign out everywhere' }));

  const dialogTitle = h('h2', { id: 'everywhere-title', text: 'Sign out everywhere?' });
  const dialogText = h('p', { id: 'everywhere-text', class: 'muted' });
  const confirmButton = h('button', { type: 'submit', class: 'button button-danger', value: 'confirm', text: 'Sign out everywhere' });
  const cancelButton = h('button', { type: 'submit', class: 'button button-secondary', value: 'cancel', text: 'Cancel' });
  const dialog = h('dialog', { class: 'card dialog', 'aria-labelledby': 'everywhere-title', 'aria-describedby': 'everywhere-text' },
    h('form', { method: 'dialog', class: 'stack' },
      dialogTitle, dialogText,
      h('div', { class: 'dialog-actions' }, cancelButton, confirmButton)));

  root.replaceChildren(h('div', { class: 'page' },
    h('h1', { class: 'page-title', tabindex: '-1', text: 'Sessions' }),
    h('p', { class: 'muted lead', text: 'The devices where you’re signed in to Courier. If you don’t recognise one, sign it out.' }),
    status,
    list,
    privacySettings(),
    h('div', { class: 'danger-zone' },
      everywhere,
      h('p', { class: 'hint', text: 'Signs out every device, including this one.' })),
    dialog,
  ));

  function row(session) {
    const name = describeDevice(session.device);
    const active = h('time', { class: 'time', datetime: session.lastSeenAt, title: fullTime(session.lastSeenAt) });
    const nameId = `session-${session.id}-name`;
    const li = h('li', { class: 'session-row', dataset: { id: session.id, current: String(Boolean(session.current)) } },
      h('span', { class: 'session-icon', 'aria-hidden': 'true' }, icon(/iPhone|Android|iPad/.test(name) ? 'phone' : 'devices')),
      h('span', { class: 'row-body' },
        h('span', { class: 'row-top' },
          h('span', { class: 'name', id: nameId, text: name, title: session.device }),
          session.current ? h('span', { class: 'badge', text: 'This device' }) : null),
        h('span', { class: 'row-bottom muted small' },
          active,
          h('span', { 'aria-hidden': 'true', text: ' · ' }),
          'Signed in ',
          h('time', {
            datetime: session.createdAt, title: fullTime(session.createdAt),
            text: new Date(session.createdAt).toLocaleDateString(undefined, { dateStyle: 'medium' }),
          }))),
      session.current
        ? null
        : h('button', {
          type: 'button', class: 'button button-secondary button-small',
          onclick: () => signOut(session.id),
        }, 'Sign out', h('span', { class: 'visually-hidden', text: ` ${name}` })));
    const entry = { session, li, active };
    tick(entry);
    return entry;
  }

  function tick({ session, active }) {
    active.textContent = session.current ? 'Active now' : lastActive(session.lastSeenAt);
  }

  function render(sessions) {
    rows.clear();
    // This device first, then the most recently active.
    const sorted = [...sessions].sort((a, b) =>
      Number(Boolean(b.current)) - Number(Boolean(a.current)) || Date.parse(b.lastSeenAt) - Date.parse(a.lastSeenAt));
    list.replaceChildren(...sorted.map((s) => {
      const entry = row(s);
      rows.set(s.id, entry);
      return entry.li;
    }));
    everywhere.hidden = sorted.length === 0;
  }

  async function load() {
    try {
      const sessions = await api.sessions();
      if (!alive) return;
      status.textContent = (sessions || []).length <= 1 ? 'No other devices are signed in.' : '';
      render(sessions || []);
    } catch (err) {
      if (alive && err.status !== 401) status.textContent = `Couldn't load sessions. ${err.message}`;
    }
  }

  async function signOut(id) {
    const entry = rows.get(id);
    if (!entry) return;
    const button = entry.li.querySelector('button');
    const name = describeDevice(entry.session.device);
    button.disabled = true;
    try {
      await api.signOutSession(id);
    } catch (err) {
      if (err.status !== 404) { // 404: it had already ended
        button.disabled = false;
        if (alive && err.status !== 401) status.textContent = `Couldn't sign out ${name}. ${err.message}`;
        return;
      }
    }
    if (!alive) return;
    // Keep keyboard focus in the list: on the next row's button, else the previous one's.
    const next = entry.li.nextElementSibling || entry.li.previousElementSibling;
    entry.li.remove();
    rows.delete(id);
    status.textContent = `Signed out ${name}.`;
    (next?.querySelector('button') || list.closest('.page').querySelector('h1')).focus();
  }

  everywhere.addEventListener('click', () => {
    const count = rows.size;
    dialogText.textContent = count > 1
      ? `This ends all ${count} sessions, including this one. You’ll need to sign in again on each device.`
      : 'This ends your session on this device too. You’ll need to sign in again.';
    dialog.returnValue = '';
    dialog.showModal();
    cancelButton.focus(); // the safe choice is the default
  });

  dialog.addEventListener('close', async () => {
    if (dialog.returnValue !== 'confirm') {
      everywhere.focus();
      return;
    }
    everywhere.disabled = true;
    try {
      await signOutEverywhere(); // the app then shows the access page
    } catch (err) {
      everywhere.disabled = false;
      if (!alive || err.status === 401) return; // already signed out; the app shows the access page
      status.textContent = `Couldn't sign out everywhere. ${err.message}`;
      everywhere.focus();
    }
  });

  const ticker = setInterval(() => rows.forEach(tick), 30_000);
  load();

  return () => {
    alive = false;
    clearInterval(ticker);
    if (dialog.open) dialog.close();
  };
}

// Whether people who share a conversation with you see when you were last online.
function privacySettings() {
  const box = h('input', { type: 'checkbox', id: 'show-last-seen', name: 'showLastSeen', disabled: true });
  const status = h('p', { class: 'hint', role: 'status' });
  box.addEventListener('change', async () => {
    box.disabled = true;
    status.textContent = '';
    try {
      const settings = await api.updateSettings({ showLastSeen: box.checked });
      box.checked = Boolean(settings.showLastSeen);
      status.textContent = box.checked ? 'Others can see when you were last online.' : 'Your last-seen time is hidden.';
    } catch (err) {
      box.checked = !box.checked;
      status.textContent = `Not saved. ${err.message}`;
    } finally {
      box.disabled = false;
    }
  });
  api.settings()
    .then((settings) => {
      box.checked = Boolean(settings.showLastSeen);
      box.disabled = false;
    })
    .catch((err) => {
      status.textContent = `Couldn't load your settings. ${err.message}`;
    });
  return h('section', { class: 'privacy', 'aria-labelledby': 'privacy-title' },
    h('h2', { id: 'privacy-title', text: 'Privacy' }),
    h('div', { class: 'checkbox-field' }, box, h('label', { for: 'show-last-seen', text: 'Show when I was last online' })),
    status);
}
