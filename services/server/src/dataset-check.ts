// What a dataset file holds, checked before a task is queued: its layout (one JSON array, or one
// JSON value per line, told apart by the first character as the reference trainer does), each
// record's format, how many records there are, which lines are malformed, and about how many
// tokens it holds. Pure: bytes in (a chunk at a time, so a large file never has to fit in
// memory as JSON lines), a report out; dataset-inspect.ts reads the file.

/** The record formats a dataset may use (one per record; a dataset may mix them). */
export type RecordFormat = 'alpaca' | 'conversations' | 'messages' | 'question_answer' | 'text';

/** What each format looks like, for messages that list them. */
const FORMAT_SHAPES: Readonly<Record<RecordFormat, string>> = {
  alpaca: '{"instruction", "input", "output"}',
  conversations: '{"conversations": [{"role", "content"}, …]}',
  messages: '{"messages": [{"role", "content"}, …]} (OpenAI chat)',
  question_answer: '{"question", "answer"}',
  text: '{"text"}',
};

export type DatasetLayout = 'json-array' | 'json-lines';

export interface MalformedRecord {
  /** 1-based line of the file; null inside a JSON array (see `record`). */
  line: number | null;
  /** 1-based position among the records. */
  record: number;
  /** False when the line is not JSON at all; true when it is JSON in no known format. */
  json: boolean;
  reason: string;
}

export interface DatasetReport {
  layout: DatasetLayout;
  /** The format of every usable record, 'mixed' when they differ, null when none is usable. */
  format: RecordFormat | 'mixed' | null;
  /** Usable records by format. */
  formats: Partial<Record<RecordFormat, number>>;
  /** Usable records. */
  records: number;
  /** Every malformed record or line, counted. */
  malformedCount: number;
  /** Those of them that are not JSON at all. */
  notJsonCount: number;
  /** The first of those (at most MALFORMED_KEPT). */
  notJson: MalformedRecord[];
  /** The first of them (at most MALFORMED_KEPT), in file order. */
  malformed: MalformedRecord[];
  /** Roughly how many tokens the usable records' text holds (see estimateTokens). */
  estimatedTokens: number;
  bytes: number;
  /** Set when the file could not be read as a whole (too large to parse as one JSON array). */
  unreadable: string | null;
}

/** How many malformed records a report lists (all are counted). */
export const MALFORMED_KEPT = 20;

type Verdict = { format: RecordFormat; text: string } | { problem: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isText = (v: unknown): v is string => typeof v === 'string';
const describe = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;

/** A message's content: text, or OpenAI's list of parts (their text parts). */
function contentText(content: unknown): string | null {
  if (isText(content)) return content;
  if (Array.isArray(content)) {
    const parts = content.filter((p): p is { text: string } => isObject(p) && isText(p.text)).map((p) => p.text);
    return parts.length ? parts.join('\n') : null;
  }
  return null;
}

function turns(field: 'messages' | 'conversations', value: unknown): Verdict {
  if (!Array.isArray(value) || value.length === 0) return { problem: `${field} must be a non-empty list of {"role", "content"}` };
  const texts: string[] = [];
  for (const [i, turn] of value.entries()) {
    if (!isObject(turn)) return { problem: `${field}[${i}] is ${describe(turn)}, not {"role", "content"}` };
    // ShareGPT writes {"from", "value"}: the same thing under other names.
    const role = turn.role ?? turn.from;
    const content = contentText(turn.content ?? turn.value);
    if (!isText(role) || !role.trim()) return { problem: `${field}[${i}] has no role` };
    if (content === null) return { problem: `${field}[${i}] has no text content` };
    texts.push(content);
  }
  if (!texts.some((t) => t.trim())) return { problem: `every turn of ${field} is empty` };
  return { format: field, text: texts.join('\n') };
}

/** The format one record is in, with the text it contributes; or what is wrong with it. */
export function recordFormat(record: unknown): Verdict {
  if (!isObject(record)) return { problem: `a record must be a JSON object, not ${describe(record)}` };
  if ('messages' in record) return turns('messages', record.messages);
  if ('conversations' in record) return turns('conversations', record.conversations);
  if ('instruction' in record || 'output' in record) {
    const { instruction, input, output } = record;
    if (!isText(instruction) || !isText(output)) return { problem: 'an Alpaca record needs "instruction" and "output" as text' };
    if (input !== undefined && input !== null && !isText(input)) return { problem: 'an Alpaca record\'s "input" must be text' };
    if (!instruction.trim() && !output.trim()) return { problem: 'the record\'s "instruction" and "output" are both empty' };
    return { format: 'alpaca', text: [instruction, input ?? '', output].join('\n') };
  }
  if ('question' in record || 'answer' in record) {
    const { question, answer } = record;
    if (!isText(question) || !isText(answer)) return { problem: 'a question/answer record needs "question" and "answer" as text' };
    if (!question.trim() && !answer.trim()) return { problem: 'the record\'s "question" and "answer" are both empty' };
    return { format: 'question_answer', text: `${question}\n${answer}` };
  }
  if ('text' in record) {
    if (!isText(record.text) || !record.text.trim()) return { problem: '"text" must be non-empty text' };
    return { format: 'text', text: record.text };
  }
  const keys = Object.keys(record).slice(0, 5);
  return {
    problem: `the record has none of the known fields (${keys.length ? `it has ${keys.map((k) => JSON.stringify(k)).join(', ')}` : 'it is empty'})`,
  };
}

// Scripts written without spaces between words: a character is about a token.
const DENSE_SCRIPT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/gu;

/**
 * A tokenizer-free estimate: about four characters a token for alphabetic text, one for
 * Chinese, Japanese and Korean characters. Within a factor of two of real tokenizers, which is
 * what a time or memory warning needs.
 */
export function estimateTokens(text: string): number {
  const dense = text.match(DENSE_SCRIPT)?.length ?? 0;
  return dense + Math.ceil((text.length - dense) / 4);
}

/** The line a position in a text is on (1-based). */
function lineAt(text: string, position: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < position; i = text.indexOf('\n', i + 1)) line += 1;
  return line;
}

/** A JSON.parse error's words, with its line when V8 says the position. */
function jsonProblem(err: unknown, text: string): { line: number | null; reason: string } {
  const message = (err as Error).message;
  const at = /at position (\d+)/.exec(message);
  return { line: at ? lineAt(text, Number(at[1])) : null, reason: message };
}

/**
 * Fed a dataset file's bytes in order (`push`), reports on it (`end`). JSON lines are checked
 * a line at a time; a JSON array is held (up to `maxJsonBytes`) and parsed at the end.
 */
export class DatasetChecker {
  private layout: DatasetLayout | null = null;
  private pending: Buffer[] = [];
  private bytes = 0;
  private parts: Buffer[] = [];
  private held = 0;
  private overLong = false;
  private line = 1;
  private recordNo = 0;
  private records = 0;
  private tokens = 0;
  private formats: Partial<Record<RecordFormat, number>> = {};
  private malformed: MalformedRecord[] = [];
  private malformedCount = 0;
  private notJsonCount = 0;
  private notJson: MalformedRecord[] = [];
  private unreadable: string | null = null;

  constructor(private readonly opts: { maxJsonBytes: number }) {}

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.layout === null) {
      // Blank space before the first character is held until that character says the layout.
      this.pending.push(chunk);
      const start = Buffer.concat(this.pending);
      const first = start
        .toString('utf8')
        .replace(/^\uFEFF/, '')
        .trimStart();
      if (!first) return;
      this.layout = first.startsWith('[') ? 'json-array' : 'json-lines';
      this.pending = [];
      chunk = start;
    }
    if (this.layout === 'json-array') return this.hold(chunk);
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      this.hold(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
    if (start < chunk.length) this.hold(chunk.subarray(start));
  }

  end(): DatasetReport {
    if (this.layout === 'json-array') this.parseArray();
    else if (this.layout === 'json-lines') this.endLine();
    const used = Object.keys(this.formats) as RecordFormat[];
    return {
      layout: this.layout ?? 'json-lines',
      format: used.length === 0 ? null : used.length === 1 ? used[0]! : 'mixed',
      formats: this.formats,
      records: this.records,
      malformedCount: this.malformedCount,
      notJsonCount: this.notJsonCount,
      notJson: this.notJson,
      malformed: this.malformed,
      estimatedTokens: this.tokens,
      bytes: this.bytes,
      unreadable: this.unreadable,
    };
  }

  private hold(bytes: Buffer): void {
    if (this.overLong) return;
    this.held += bytes.length;
    if (this.held > this.opts.maxJsonBytes) {
      this.overLong = true;
      this.parts = [];
      return;
    }
    if (bytes.length) this.parts.push(Buffer.from(bytes));
  }

  private take(): string {
    const text = Buffer.concat(this.parts).toString('utf8');
    this.parts = [];
    this.held = 0;
    return text;
  }

  private note(m: MalformedRecord): void {
    this.malformedCount += 1;
    if (!m.json && this.notJsonCount++ < MALFORMED_KEPT) this.notJson.push(m);
    if (this.malformed.length < MALFORMED_KEPT) this.malformed.push(m);
  }

  private count(value: unknown, line: number | null): void {
    this.recordNo += 1;
    const verdict = recordFormat(value);
    if ('problem' in verdict) return this.note({ line, record: this.recordNo, json: true, reason: verdict.problem });
    this.records += 1;
    this.formats[verdict.format] = (this.formats[verdict.format] ?? 0) + 1;
    this.tokens += estimateTokens(verdict.text);
  }

  private endLine(): void {
    const at = this.line;
    this.line += 1;
    if (this.overLong) {
      this.overLong = false;
      this.held = 0;
      this.recordNo += 1;
      return this.note({
        line: at,
        record: this.recordNo,
        json: false,
        reason: `the line is longer than ${this.opts.maxJsonBytes} bytes`,
      });
    }
    const text = this.take().replace(/^\uFEFF/, '');
    if (!text.trim()) return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      this.recordNo += 1;
      return this.note({ line: at, record: this.recordNo, json: false, reason: `not JSON: ${(err as Error).message}` });
    }
    this.count(value, at);
  }

  private parseArray(): void {
    if (this.overLong) {
      this.unreadable = `a dataset that is one JSON array is limited to ${this.opts.maxJsonBytes} bytes; write larger ones as JSON lines (one record per line)`;
      return;
    }
    const text = this.take().replace(/^\uFEFF/, '');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      const { line, reason } = jsonProblem(err, text);
      return this.note({ line, record: 0, json: false, reason: `not JSON: ${reason}` });
    }
    if (!Array.isArray(value)) return;
    for (const item of value) this.count(item, null);
  }
}

/** Where a malformed record is, in words: "line 3" or "record 3". */
function whereIs(m: MalformedRecord): string {
  return m.line !== null ? `line ${m.line}` : m.record > 0 ? `record ${m.record}` : 'the file';
}

function listOf(ms: readonly MalformedRecord[], total: number): string {
  const shown = ms.slice(0, 5).map((m) => `${whereIs(m)}: ${m.reason}`);
  return shown.join('; ') + (total > shown.length ? `; and ${total - shown.length} more` : '');
}

/**
 * Why a dataset cannot be trained on, or null when it can. Empty files, files too large to read
 * and files with a line that is not JSON are refused (the reference trainer reads the whole file
 * and stops at the first such line); so is a file none of whose records is in a known format.
 */
export function refusalOf(r: DatasetReport): string | null {
  if (r.unreadable) return r.unreadable;
  if (r.notJsonCount) return `it is not valid ${r.layout === 'json-array' ? 'JSON' : 'JSON lines'}: ${listOf(r.notJson, r.notJsonCount)}`;
  if (r.records === 0 && r.malformedCount === 0) return 'it is empty (no records)';
  if (r.records === 0)
    return (
      `none of its ${r.malformedCount} records is in a known format (${Object.values(FORMAT_SHAPES).join(', ')}): ` +
      listOf(r.malformed, r.malformedCount)
    );
  return null;
}

/** Sentences for a dataset that can be used but has records the trainer will skip. */
export function warningsOf(r: DatasetReport): string[] {
  if (!r.malformedCount || refusalOf(r)) return [];
  return [
    `${r.malformedCount} of the dataset's ${r.records + r.malformedCount} records ${r.malformedCount === 1 ? 'is' : 'are'} in no known format and will be skipped: ${listOf(r.malformed, r.malformedCount)}`,
  ];
}
