// Files in messages: what a sent message shows (images inline, opening a lightbox; other files
// as cards with name and size), and the composer's side of sending them (an attach button,
// drag and drop, pasted images), each upload with a progress bar and a cancel button.
//
// Downloads ride the session cookie like every other request, so image and link URLs carry
// no token. Uploads go through XMLHttpRequest because fetch reports no upload progress.

import { h } from '../dom.js';
import { csrfToken } from '../api.js';

export function formatSize(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB'];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1000;
    unit += 1;
  } while (value >= 1000 && unit < units.length - 1);
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

const isImage = (a) => /^image\/(jpeg|png|gif|webp)$/.test(a.type);

// The attachments of a sent message, or null when it has none.
export function attachmentsNode(msg) {
  const files = msg.attachments ?? [];
  if (!files.length) return null;
  return h('div', { class: 'attachments' }, files.map((a) => (isImage(a) ? imageNode(a) : fileCard(a))));
}

function imageNode(a) {
  const img = h('img', {
    src: a.thumbnail ?? a.url,
    alt: a.name,
    loading: 'lazy',
    decoding: 'async',
    width: a.width && a.height ? Math.min(a.width, 320, Math.round((320 * a.width) / a.height)) : undefined,
  });
  return h('button', {
    type: 'button',
    class: 'attachment-image',
    'aria-label': `Open image ${a.name}`,
    onclick: (event) => {
      event.stopPropagation();
      openLightbox(a, event.currentTarget);
    },
  }, img);
}

function fileCard(a) {
  return h('a', {
    class: 'attachment-file',
    href: a.url,
    download: a.name,
    'aria-label': `Download ${a.name}, ${formatSize(a.size)}`,
  },
  h('span', { class: 'attachment-name', dir: 'auto', text: a.name }),
  h('span', { class: 'attachment-size', text: formatSize(a.size) }));
}

// A full-size image over the page; Escape, the close button or a click outside closes it and
// gives focus back to the thumbnail.
export function openLightbox(a, returnFocus) {
  const close = () => {
    dialog.remove();
    document.removeEventListener('keydown', onKey, true);
    returnFocus?.focus();
  };
  const onKey = (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      close();
    }
  };
  const closeButton = h('button', { type: 'button', class: 'lightbox-close', 'aria-label': 'Close image', text: '×', onclick: close });
  const dialog = h('div', {
    class: 'lightbox',
    role: 'dialog',
    'aria-modal': 'true',
    'aria-label': a.name,
    onclick: (event) => {
      if (event.target === dialog) close();
    },
  },
  h('img', { src: a.url, alt: a.name }),
  h('div', { class: 'lightbox-bar' },
    h('a', { href: a.url, download: a.name, text: `Download ${a.name} (${formatSize(a.size)})` }),
    closeButton));
  document.addEventListener('keydown', onKey, true);
  document.body.append(dialog);
  closeButton.focus();
  return close;
}

// Uploads one file with progress; returns { promise, abort }. The promise resolves with the
// upload's JSON, or rejects with an Error whose `cancelled` is true after abort().
export function uploadFile(file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', `/api/uploads?name=${encodeURIComponent(file.name || 'pasted')}`);
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'json';
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status === 201) return resolve(xhr.response);
      const body = xhr.response;
      const message = body?.error || (body?.errors && Object.values(body.errors)[0]) || `Upload failed (${xhr.status}).`;
      reject(Object.assign(new Error(message), { status: xhr.status }));
    };
    xhr.onerror = () => reject(Object.assign(new Error("Can't reach the server."), { status: 0 }));
    xhr.onabort = () => reject(Object.assign(new Error('Upload cancelled.'), { cancelled: true }));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

// The composer's files: call with the form, the element that takes drops, and the textarea
// (which takes pastes). Returns { button, tray, ids(), busy(), clear() }.
export function composerAttachments({ dropTarget, textarea, onError, onChange = () => {} }) {
  const pending = []; // { file, row, upload?, done?, abort }
  const tray = h('ul', { class: 'upload-tray', 'aria-label': 'Files to send', hidden: true });
  const input = h('input', { type: 'file', multiple: true, hidden: true, class: 'attach-input' });
  const button = h('button', {
    type: 'button',
    class: 'attach-button icon-button',
    'aria-label': 'Attach files',
    title: 'Attach files',
    text: '📎',
    onclick: () => input.click(),
  });
  input.addEventListener('change', () => {
    add([...input.files]);
    input.value = '';
  });

  function refresh() {
    tray.hidden = pending.length === 0;
    onChange();
  }

  function add(files) {
    for (const file of files) {
      const bar = h('progress', { max: 1, value: 0, 'aria-label': `Uploading ${file.name || 'image'}` });
      const status = h('span', { class: 'upload-status', text: formatSize(file.size) });
      const entry = { file, done: null };
      const cancel = h('button', {
        type: 'button',
        class: 'upload-cancel',
        'aria-label': `Remove ${file.name || 'image'}`,
        text: '×',
        onclick: () => remove(entry),
      });
      entry.row = h('li', { class: 'upload' },
        h('span', { class: 'upload-name', dir: 'auto', text: file.name || 'Pasted image' }), bar, status, cancel);
      const { promise, abort } = uploadFile(file, (fraction) => {
        bar.value = fraction;
      });
      entry.abort = abort;
      pending.push(entry);
      tray.append(entry.row);
      refresh();
      promise.then((upload) => {
        entry.done = upload;
        bar.value = 1;
        entry.row.classList.add('uploaded');
        status.textContent = `${formatSize(upload.size)} ✓`;
        refresh();
      }, (err) => {
        if (err.cancelled) return;
        remove(entry);
        onError(err.message);
      });
    }
  }

  function remove(entry) {
    if (!entry.done) entry.abort();
    const at = pending.indexOf(entry);
    if (at >= 0) pending.splice(at, 1);
    entry.row.remove();
    refresh();
  }

  textarea.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (!files.length) return;
    event.preventDefault();
    add(files);
  });
  dropTarget.addEventListener('dragover', (event) => {
    if (![...event.dataTransfer.types].includes('Files')) return;
    event.preventDefault();
    dropTarget.classList.add('drop-here');
  });
  dropTarget.addEventListener('dragleave', (event) => {
    if (event.target === dropTarget) dropTarget.classList.remove('drop-here');
  });
  dropTarget.addEventListener('drop', (event) => {
    dropTarget.classList.remove('drop-here');
    const files = [...(event.dataTransfer?.files ?? [])];
    if (!files.length) return;
    event.preventDefault();
    add(files);
  });

  return {
    button,
    input,
    tray,
    ids: () => pending.filter((p) => p.done).map((p) => p.done.id),
    busy: () => pending.some((p) => !p.done),
    clear: () => {
      for (const p of [...pending]) p.row.remove();
      pending.length = 0;
      refresh();
    },
  };
}
