// Document title: the page name, prefixed with the count of messages that arrived where the
// person isn't looking: in another conversation, or in any while the tab is hidden.

let base = 'Courier';
let viewing = null; // the conversation on screen, if any
const unseen = new Map(); // conversation id -> messages not yet looked at

function render() {
  let total = 0;
  for (const n of unseen.values()) total += n;
  document.title = total > 0 ? `(${total}) ${base}` : base;
}

export function setPageTitle(name) {
  base = name ? `${name} · Courier` : 'Courier';
  render();
}

// The conversation now on screen (null: none); its count is cleared while the tab is visible.
export function setViewing(conversationId) {
  viewing = conversationId;
  if (viewing && !document.hidden) clearUnseen(viewing);
}

export function viewingConversation() {
  return document.hidden ? null : viewing;
}

export function clearUnseen(conversationId) {
  if (unseen.delete(conversationId)) render();
}

export function noteIncoming(msg) {
  const id = msg?.conversationId ?? '';
  if (!document.hidden && id === viewing) return;
  unseen.set(id, (unseen.get(id) || 0) + 1);
  render();
}

export function resetUnseen() {
  unseen.clear();
  render();
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && viewing) clearUnseen(viewing);
});
