import { handler } from '../../functions/aggregate';
import { closeDb } from '../../lib/db';
import { setLogLevel, setLogSink } from '../../lib/log';
import { urlOf } from '../support/database';

/** A run that fails (here: its database does not exist) is logged and returned, never thrown. */
describe('aggregate handler when the database fails', () => {
  const lines: Record<string, unknown>[] = [];
  beforeAll(() => {
    process.env.DATABASE_URL = urlOf('no_such_database_for_aggregate');
    setLogLevel('info');
    setLogSink((line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  });
  afterAll(async () => {
    setLogSink(undefined);
    setLogLevel('silent');
    await closeDb();
  });

  it('returns status error with the SQLSTATE and logs one error line', async () => {
    const result = await handler({ id: 'evt-err' } as never);
    expect(result).toMatchObject({ status: 'error', scheduledEventId: 'evt-err', error: { code: '3D000' } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'error',
      message: 'aggregate run failed',
      status: 'error',
      lag_seconds: null,
    });
    expect(typeof lines[0]?.duration_ms).toBe('number');
  });
});
