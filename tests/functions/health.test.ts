import { handler } from '../../functions/health';
import { useFreshDatabase } from '../support/database';
import { invoke } from '../support/http';

describe('GET /api/health', () => {
  useFreshDatabase();

  it('answers without a key and names the database mode', async () => {
    const res = await invoke(handler, { path: '/api/health', key: null });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/vnd.api+json');
    expect(res.body.data.attributes).toEqual({ status: 'ok', database: 'postgres' });
  });
});
