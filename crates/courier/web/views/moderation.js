import { api } from '../api.js';
import * as stream from '../stream.js';
import { h } from '../dom.js';
import { fullTime } from '../format.js';
import { setPageTitle } from '../title.js';

// The server admin's moderation page: open reports (jump to the message, resolve) and people
// (search, disable, enable). Every action asks the server, which checks the admin role itself.
export function mountModeration(root) {
  setPageTitle('Moderation');
  let alive = true;
  const status = h('p', { class: 'muted', role: 'status' });
  const reportList = h('ul', { class: 'session-list report-list', 'aria-label': 'Reports' });
  const reportStatus = h('p', { class: 'muted list-status', text: 'Loading reports…' });
  const search = h('input', { type: 'search', class: 'input', placeholder: 'Search people', 'aria-label': 'Search people', autocomplete: 'off' });
  const peopleList = h('ul', { class: 'session-list people-list', 'aria-label': 'People' });

  root.replaceChildren(h('div', { class: 'page' },
    h('h1', { class: 'page-title', tabindex: '-1', text: 'Moderation' }),
    status,
    h('section', { class: 'stack' },
      h('h2', { text: 'Reports' }), reportStatus, reportList),
    h('section', { class: 'stack' },
      h('h2', { text: 'People' }), search, peopleList),
  ));

  const fail = (e) => { if (alive) status.textContent = e?.data?.error || 'Something went wrong; try again.'; };

  function loadReports() {
    api.reports().then((reports) => {
      if (!alive) return;
      reportStatus.textContent = reports.length ? '' : 'No open reports.';
      reportList.replaceChildren(...reports.map(reportRow));
    }).catch(fail);
  }

  function reportRow(r) {
    return h('li', { class: 'session-row report-row', dataset: { id: r.id } },
      h('span', { class: 'row-body' },
        h('span', { class: 'row-top' },
          h('span', { class: 'name', text: `${r.reporter} reported ${r.sender}` }),
          h('time', { class: 'time muted small', datetime: r.createdAt, text: fullTime(r.createdAt) })),
        h('span', { class: 'report-content', dir: 'auto', text: r.content || 'Deleted message' }),
        r.reason ? h('span', { class: 'muted small', dir: 'auto', text: `Reason: ${r.reason}` }) : null),
      h('a', { class: 'button button-secondary button-small', href: `/c/${encodeURIComponent(r.conversationId)}?message=${encodeURIComponent(r.messageId)}`, text: 'Open message' }),
      h('button', {
        type: 'button', class: 'button button-secondary button-small', text: 'Resolve',
        onclick: () => api.resolveReport(r.id).then(() => {
          loadReports();
          window.dispatchEvent(new CustomEvent('courier:reports-changed'));
        }).catch(fail),
      }));
  }

  let searching = 0;
  function loadPeople() {
    const ticket = ++searching;
    api.adminUsers(search.value.trim()).then((people) => {
      if (!alive || ticket !== searching) return;
      peopleList.replaceChildren(...people.map(personRow));
    }).catch(fail);
  }

  function personRow(p) {
    const disabled = Boolean(p.disabledAt);
    return h('li', { class: 'session-row person-row', dataset: { username: p.username } },
      h('span', { class: 'row-body' },
        h('span', { class: 'row-top' },
          h('span', { class: 'name', text: p.username }),
          p.isAdmin ? h('span', { class: 'badge', text: 'Admin' }) : null,
          disabled ? h('span', { class: 'badge badge-danger', text: 'Disabled' }) : null,
          p.deleted ? h('span', { class: 'badge', text: 'Deleted' }) : null)),
      p.deleted ? null : h('button', {
        type: 'button', class: `button button-small ${disabled ? 'button-secondary' : 'button-danger'}`,
        text: disabled ? 'Enable' : 'Disable',
        'aria-label': `${disabled ? 'Enable' : 'Disable'} ${p.username}`,
        onclick: () => {
          if (!disabled && !window.confirm(`Disable ${p.username}? They are signed out everywhere and cannot sign in until enabled.`)) return;
          api.setDisabled(p.id, !disabled).then(loadPeople).catch(fail);
        },
      }));
  }

  let timer = 0;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(loadPeople, 200); });
  // A report filed now arrives on the stream; after a gap the list is read again.
  const offReport = stream.on('report', loadReports);
  const offReset = stream.on('reset', loadReports);
  loadReports();
  loadPeople();
  return () => { alive = false; clearTimeout(timer); offReport(); offReset(); };
}
