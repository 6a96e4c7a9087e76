// Text from a trainer shown on a terminal. A trainer prints what it likes, and a terminal acts
// on what it is sent: colours are harmless, but OSC 52 writes the clipboard, OSC 8 makes links
// that say one thing and open another, and CR, backspace or cursor moves rewrite what was shown
// before. On a terminal, log lines are shown with every control sequence and control character
// removed (tabs kept). Pure.

// ESC or 8-bit C1 introducers, then the sequence's own bytes (ECMA-48):
const SEQUENCE = new RegExp(
  [
    // CSI: parameters, intermediates, a final byte (absent when the text ends first).
    '(?:\\u001b\\[|\\u009b)[\\u0030-\\u003f]*[\\u0020-\\u002f]*[\\u0040-\\u007e]?',
    // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \ or 8-bit ST), or the end of the text.
    '(?:\\u001b[\\]PX^_]|[\\u0090\\u0098\\u009d\\u009e\\u009f])[^\\u0007\\u001b\\u009c]*(?:\\u0007|\\u001b\\\\|\\u009c)?',
    // Any other escape: intermediates and a final byte.
    '\\u001b[\\u0020-\\u002f]*[\\u0030-\\u007e]?',
  ].join('|'),
  'g',
);
/** C0 controls but tab, DEL, and C1 controls. */
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;

/** `text` without escape sequences (ANSI CSI, OSC, DCS, ...) and control characters other than tab. */
export function stripControls(text: string): string {
  return text.replace(SEQUENCE, '').replace(CONTROL, '');
}

/** What to write of a trainer's line: stripped on a terminal, as stored when piped (a file, grep). */
export function forTerminal(text: string, isTTY: boolean): string {
  return isTTY ? stripControls(text) : text;
}
