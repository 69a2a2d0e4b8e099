// A group's members and settings, opened from the conversation header: see members and roles;
// admins rename, add and remove; the owner changes roles; anyone leaves. The server decides
// who may do what; the panel offers only what the caller's role allows and shows its errors.

import { api } from '../api.js';
import { avatar, displayName, fullName } from '../avatar.js';
import { h } from '../dom.js';
import { navigate } from '../router.js';

const RANK = { member: 0, admin: 1, owner: 2 };

export function groupPanel(conversationId, { onRenamed }) {
  let conv = null;
  const status = h('p', { class: 'field-error', role: 'alert' });
  const list = h('ul', { class: 'member-list', 'aria-label': 'Members' });
  const titleInput = h('input', { id: 'group-rename', type: 'text', maxlength: '100', autocomplete: 'off' });
  const renameForm = h('form', { class: 'inline-field', 'aria-label': 'Rename group' },
    titleInput, h('button', { type: 'submit', class: 'button button-secondary', text: 'Rename' }));
  const addInput = h('input', {
    id: 'group-add', type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'username, username',
  });
  const addForm = h('form', { class: 'inline-field', 'aria-label': 'Add people' },
    addInput, h('button', { type: 'submit', class: 'button button-secondary', text: 'Add' }));
  const leaveButton = h('button', { type: 'button', class: 'button button-danger', text: 'Leave group' });
  const panel = h('section', { class: 'group-panel', hidden: true, 'aria-label': 'Group members and settings' },
    h('h2', { class: 'panel-title', text: 'Members' }),
    list,
    h('div', { class: 'admin-only' },
      h('label', { for: 'group-rename', text: 'Title' }), renameForm,
      h('label', { for: 'group-add', text: 'Add people' }), addForm),
    leaveButton,
    status);

  async function act(work) {
    status.textContent = '';
    try {
      await work();
      await refresh();
    } catch (err) {
      status.textContent = err.message;
    }
  }

  function memberRow(member, myRank) {
    const theirs = RANK[member.role];
    const controls = [];
    if (myRank === RANK.owner && member.role !== 'owner') {
      const next = member.role === 'admin' ? 'member' : 'admin';
      controls.push(h('button', {
        type: 'button', class: 'button button-small button-secondary',
        text: next === 'admin' ? 'Make admin' : 'Make member',
        onclick: () => act(() => api.setRole(conversationId, member.user.id, next)),
      }));
    }
    if (myRank >= RANK.admin && (theirs < myRank || myRank === RANK.owner) && member.user.id !== conv.meId) {
      controls.push(h('button', {
        type: 'button', class: 'button button-small button-secondary',
        text: 'Remove', 'aria-label': `Remove ${displayName(member.user)}`,
        onclick: () => act(() => api.removeMember(conversationId, member.user.id)),
      }));
    }
    return h('li', { class: 'member-row', dataset: { role: member.role } },
      avatar(member.user, 'sm'),
      h('span', { class: 'name', dir: 'auto', text: fullName(member.user) }),
      h('span', { class: 'role', text: member.role === 'member' ? '' : member.role }),
      ...controls);
  }

  async function refresh() {
    const [view, members, me] = await Promise.all([api.conversation(conversationId), api.members(conversationId), api.authUser()]);
    conv = { ...view, meId: me.id };
    const myRank = RANK[view.role] ?? 0;
    titleInput.value = view.title || '';
    panel.querySelector('.admin-only').hidden = myRank < RANK.admin;
    const sorted = [...(members || [])].sort((a, b) => RANK[b.role] - RANK[a.role]
      || a.user.username.localeCompare(b.user.username));
    list.replaceChildren(...sorted.map((m) => memberRow(m, myRank)));
  }

  renameForm.addEventListener('submit', (event) => {
    event.preventDefault();
    act(async () => {
      const renamed = await api.rename(conversationId, titleInput.value);
      onRenamed(renamed.title);
    });
  });
  addForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const usernames = addInput.value.split(/[\s,]+/).filter(Boolean);
    act(async () => {
      await api.addMembers(conversationId, usernames);
      addInput.value = '';
    });
  });
  let confirming = false;
  leaveButton.addEventListener('click', async () => {
    if (!confirming) {
      confirming = true;
      leaveButton.textContent = 'Leave for good? Click again';
      return;
    }
    try {
      await api.leave(conversationId);
      navigate('/');
    } catch (err) {
      status.textContent = err.message;
    }
  });

  const toggle = h('button', {
    type: 'button', class: 'button button-small button-secondary', 'aria-expanded': 'false', text: 'Members',
  });
  toggle.addEventListener('click', async () => {
    const open = panel.hidden;
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open) await act(async () => {});
  });
  return { toggle, panel, refresh: () => (panel.hidden ? Promise.resolve() : refresh()) };
}
