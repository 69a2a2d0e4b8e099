// This device's preferences, kept in localStorage (they suit a device, not an account).
// enterKey: 'auto' (Enter sends with a keyboard, inserts a newline on touch screens, where the
// send button sends), 'send' or 'newline'.

import { h } from './dom.js';

const KEY = 'courier.enterKey';

export function enterKeySetting() {
  const value = localStorage.getItem(KEY);
  return value === 'send' || value === 'newline' ? value : 'auto';
}

export function setEnterKey(value) {
  if (value === 'auto') localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, value);
}

export function touchScreen() {
  return matchMedia('(pointer: coarse)').matches;
}

export function enterSends() {
  const setting = enterKeySetting();
  if (setting === 'auto') return !touchScreen();
  return setting === 'send';
}

// The "Enter key" choice, as a small radio group.
export function preferencesPanel() {
  const current = enterKeySetting();
  const choice = (value, label) => {
    const id = `enter-key-${value}`;
    const input = h('input', { type: 'radio', id, name: 'enter-key', value, checked: current === value });
    input.addEventListener('change', () => {
      if (input.checked) setEnterKey(value);
    });
    return h('div', { class: 'checkbox-field' }, input, h('label', { for: id, text: label }));
  };
  return h('details', { class: 'preferences' },
    h('summary', { text: 'Preferences' }),
    h('fieldset', { class: 'stack' },
      h('legend', { text: 'The Enter key in the message box' }),
      choice('auto', touchScreen() ? 'Inserts a new line on this touch screen (automatic)' : 'Sends the message (automatic; a new line on touch screens)'),
      choice('send', 'Always sends the message (Shift+Enter for a new line)'),
      choice('newline', 'Always inserts a new line (send with the button)')));
}
