import { ConfigError, loadConfig } from '../../lib/config';

/** INGEST_MODE and its queue (docs/queue.md): read once, refused loudly when they contradict. */
describe('ingest mode configuration', () => {
  const db = { DATABASE_URL: 'postgres://u:p@h:5432/d' };
  const url = 'https://sqs.us-east-1.amazonaws.com/123456789012/klaviyo-analytics-prod-ingest';

  it('writes synchronously by default', () => {
    expect(loadConfig(db).ingest).toEqual({ mode: 'sync' });
  });

  it('reads the queue, its local endpoint and the message limit in queue mode', () => {
    const cfg = loadConfig({
      ...db,
      INGEST_MODE: 'queue',
      INGEST_QUEUE_URL: url,
      INGEST_QUEUE_ENDPOINT: 'http://127.0.0.1:9324',
      INGEST_QUEUE_MESSAGE_MAX_BYTES: '1048576',
      AWS_REGION: 'eu-west-1',
    });
    expect(cfg.ingest).toEqual({
      mode: 'queue',
      queue: { queueUrl: url, endpoint: 'http://127.0.0.1:9324', region: 'eu-west-1', maxBytes: 1_048_576 },
    });
    expect(loadConfig({ ...db, INGEST_MODE: 'queue', INGEST_QUEUE_URL: url }).ingest.queue?.maxBytes).toBe(262_144);
  });

  it('refuses queue mode without a queue, a queue in sync mode, and sizes SQS cannot carry', () => {
    expect(() => loadConfig({ ...db, INGEST_MODE: 'queue' })).toThrow(/INGEST_MODE=queue needs INGEST_QUEUE_URL/);
    expect(() => loadConfig({ ...db, INGEST_QUEUE_URL: url })).toThrow(ConfigError);
    expect(() => loadConfig({ ...db, INGEST_MODE: 'sync', INGEST_QUEUE_ENDPOINT: 'http://127.0.0.1:1' })).toThrow(
      /INGEST_QUEUE_ENDPOINT set but INGEST_MODE is sync/,
    );
    expect(() => loadConfig({ ...db, INGEST_MODE: 'kafka' })).toThrow(/INGEST_MODE/);
    expect(() =>
      loadConfig({ ...db, INGEST_MODE: 'queue', INGEST_QUEUE_URL: url, INGEST_QUEUE_MESSAGE_MAX_BYTES: '2097152' }),
    ).toThrow(/INGEST_QUEUE_MESSAGE_MAX_BYTES/);
    expect(() => loadConfig({ ...db, INGEST_MODE: 'queue', INGEST_QUEUE_URL: 'not a url' })).toThrow(
      /INGEST_QUEUE_URL/,
    );
  });

  it('an empty value is unset, as serverless.yml passes an unused queue URL', () => {
    expect(loadConfig({ ...db, INGEST_MODE: 'sync', INGEST_QUEUE_URL: '', INGEST_QUEUE_ENDPOINT: '' }).ingest).toEqual({
      mode: 'sync',
    });
  });
});
