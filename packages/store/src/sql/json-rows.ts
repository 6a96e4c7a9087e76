// Many rows in one INSERT as one JSON parameter, read back by jsonb_to_recordset: what a batch
// (a sweep of 1,000 tasks: 2,000 events and 1,000 rows) writes. Drizzle's builder makes a
// parameter of every value and spent about 0.1 ms a row building such a statement; one text
// parameter costs a JSON.stringify. Column names and types come from the table's drizzle columns,
// so the statement follows the schema. Parsed once, as jsonb: json_to_recordset keeps the text
// and parses each value bound for a jsonb column again, which for a batch's nested records cost
// more than the rest of the INSERT (docs/BENCHMARKS.md, "A sixth look").
import { getTableColumns, sql, type SQL } from 'drizzle-orm';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';

/**
 * The rows (keyed by the drizzle property names `.values()` takes; every row with the first
 * one's keys) as a recordset: its column list and its source, for `INSERT INTO t (columns)
 * SELECT * FROM source`.
 */
export function jsonRecordset<T extends PgTable>(table: T, rows: readonly T['$inferInsert'][]): { columns: SQL; source: SQL } {
  if (rows.length === 0) throw new Error('jsonRecordset: no rows');
  const keys = Object.keys(rows[0]!);
  const all = getTableColumns(table) as Record<string, PgColumn>;
  const cols = keys.map((k) => {
    const col = all[k];
    if (!col) throw new Error(`jsonRecordset: ${table._.name} has no column ${k}`);
    return { key: k, name: col.name, type: col.getSQLType(), json: col.getSQLType() === 'jsonb', col };
  });
  const text = JSON.stringify(
    rows.map((row) => {
      const out: Record<string, unknown> = {};
      for (const c of cols) {
        const v = (row as Record<string, unknown>)[c.key];
        // A jsonb column takes the value itself (nested JSON), not its text as a JSON string.
        out[c.name] = v === undefined || v === null || c.json ? (v ?? null) : c.col.mapToDriverValue(v);
      }
      return out;
    }),
  );
  return {
    columns: sql.raw(cols.map((c) => `"${c.name}"`).join(', ')),
    source: sql`jsonb_to_recordset(${text}::jsonb) AS v(${sql.raw(cols.map((c) => `"${c.name}" ${c.type}`).join(', '))})`,
  };
}
