// Document title: the page name, prefixed with the count of messages that arrived while hidden.

let base = 'Courier';
let unseen = 0;

function render() {
  document.title = unseen > 0 ? `(${unseen}) ${base}` : base;
}

export function setPageTitle(name) {
  base = name ? `${name} · Courier` : 'Courier';
  render();
}

export function noteIncoming() {
  if (!document.hidden) return;
  unseen += 1;
  render();
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && unseen > 0) {
    unseen = 0;
    render();
  }
});
