// History-API routing: same-origin links are intercepted, /api links are left to the browser.

let resolve = () => {};
let shown = null; // the path on screen

export function startRouter(onRoute) {
  resolve = (path) => {
    shown = path;
    onRoute(path);
  };
  // A hash-only change (the skip link) also fires popstate: the page stays as it is.
  window.addEventListener('popstate', () => {
    if (location.pathname !== shown) resolve(location.pathname);
  });
  document.addEventListener('click', interceptLink);
  resolve(location.pathname);
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else if (path !== location.pathname + location.search) history.pushState(null, '', path);
  resolve(location.pathname);
}

export function rerender() {
  resolve(location.pathname);
}

function interceptLink(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin) return;
  // An in-page link (the skip link) is the browser's job: it scrolls and moves focus there.
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  if (url.pathname === '/api' || url.pathname.startsWith('/api/')) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

// Matches "/c/{id}" and friends; returns null or the captured params.
export function match(pattern, path) {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) {
      if (!got[i]) return null;
      params[want[i].slice(1)] = decodeURIComponent(got[i]);
    } else if (want[i] !== got[i]) {
      return null;
    }
  }
  return params;
}
