import { describe, expect, it } from 'vitest';
import { forTerminal, stripControls } from './terminal-text';

describe('stripControls', () => {
  it.each([
    ['colours (CSI SGR)', '\u001b[31mred\u001b[0m plain', 'red plain'],
    ['cursor moves and erases', 'a\u001b[2K\u001b[1A\u001b[10;20Hb', 'ab'],
    ['private CSI (hide cursor)', 'x\u001b[?25ly', 'xy'],
    ['OSC 52 clipboard, BEL-terminated', 'clip\u001b]52;c;ZXZpbA==\u0007board', 'clipboard'],
    ['OSC 52 clipboard, ST-terminated', 'clip\u001b]52;c;ZXZpbA==\u001b\\board', 'clipboard'],
    ['OSC 8 link', '\u001b]8;;https://evil.example\u001b\\link\u001b]8;;\u001b\\ text', 'link text'],
    ['OSC 0 window title', '\u001b]0;pwned\u0007ok', 'ok'],
    ['an unterminated OSC takes the rest of the line', 'ok\u001b]52;c;AAAA', 'ok'],
    ['DCS and APC strings', 'a\u001bPq#0;2;0;0;0\u001b\\b\u001b_apc\u001b\\c', 'abc'],
    ['8-bit CSI and OSC', 'a\u009b31mb\u009d52;c;AA\u009cc', 'abc'],
    ['two-byte escapes (RIS, charset)', 'a\u001bcb\u001b(Bc', 'abc'],
    ['a lone ESC at the end', 'abc\u001b', 'abc'],
    ['CR, backspace, BEL, NUL, DEL, C1 NEL', 'a\rb\bc\u0007d\u0000e\u007ff\u0085g', 'abcdefg'],
  ])('removes %s', (_name, input, expected) => {
    expect(stripControls(input)).toBe(expected);
  });

  it('keeps tabs, Unicode and plain text', () => {
    const text = 'step 3\tloss 0.42 🦜 名前 é \uFFFD [brackets] ]52; ok';
    expect(stripControls(text)).toBe(text);
  });
});

describe('forTerminal', () => {
  it('strips only on a terminal: piped output keeps the stored line', () => {
    const line = '\u001b[31mred\u001b[0m';
    expect(forTerminal(line, true)).toBe('red');
    expect(forTerminal(line, false)).toBe(line);
  });
});
