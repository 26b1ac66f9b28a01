import { errorCode, UNIQUE_VIOLATION } from './errors';
import type { CopyRow, Db } from './port';

/**
 * COPY into a table in a savepoint of the transaction `tx` (which must offer copyRows). Resolves
 * undefined once the rows are stored, or with the unique violation that refused them: the savepoint
 * has rolled back and the transaction goes on, so the caller can take its ON CONFLICT path instead.
 * A row another transaction inserted and has not committed makes the COPY wait for that transaction
 * first. Any other error is thrown.
 */
export async function copyUnlessDuplicate(
  tx: Db,
  table: string,
  columns: readonly string[],
  rows: Iterable<CopyRow>,
): Promise<unknown> {
  try {
    await tx.transaction(async (savepoint) => {
      if (!savepoint.copyRows) throw new Error('the driver offers COPY in a transaction but not in its savepoints');
      await savepoint.copyRows(table, columns, rows);
    });
    return undefined;
  } catch (err) {
    if (errorCode(err) === UNIQUE_VIOLATION) return err;
    throw err;
  }
}
