// Types of safe-text.mjs (plain JavaScript, shared with the trainer shepherd).

/** `text` with NUL and lone surrogates replaced by U+FFFD (the same string when there are none). */
export function safeText(text: string): string;
/** `value` with every string in it (keys included) made safe by safeText. */
export function safeValue<T>(value: T): T;
/** JSON.stringify(value) with every string made safe: what a jsonb column accepts. */
export function safeJson(value: unknown): string;
/** safeJson's text with the value it stands for (`value` itself when nothing was replaced). */
export function safeJsonOf<T>(value: T): { json: string; value: T };
