import { list as metricsList } from '../../functions/metrics';
import { list as eventsList } from '../../functions/events';
import { linkOrigin } from '../../lib/http/request';
import { useFreshDatabase } from '../support/database';
import { apiEvent } from '../support/http';

/**
 * Links (links.self, links.next) are built from API Gateway's own domainName or the configured
 * PUBLIC_BASE_URL, never from a client's Host or X-Forwarded-Host: a cache in front would otherwise
 * serve one client's chosen host to everyone.
 */
describe('links follow API Gateway, not the client', () => {
  useFreshDatabase();

  const hostile = {
    host: 'evil.example',
    'x-forwarded-host': 'evil.example',
    'x-forwarded-proto': 'http',
  };

  function eventFor(path: string, domainName: string) {
    const event = apiEvent({ path, headers: hostile, key: 'read', query: { 'page[size]': '1' } });
    return { ...event, requestContext: { ...event.requestContext, domainName } };
  }

  it.each([
    ['/api/metrics', metricsList],
    ['/api/events', eventsList],
  ] as const)('%s: links.self uses requestContext.domainName whatever the headers say', async (path, handler) => {
    const raw = await handler(eventFor(path, 'abc123.execute-api.eu-west-1.amazonaws.com'));
    expect(raw.statusCode).toBe(200);
    const body = JSON.parse(String(raw.body)) as { links: { self: string } };
    expect(body.links.self.startsWith(`https://abc123.execute-api.eu-west-1.amazonaws.com${path}`)).toBe(true);
    expect(String(raw.body)).not.toContain('evil.example');
  });

  it('a configured public base URL wins; an unusable domain name gives relative links', () => {
    const event = eventFor('/api/metrics', 'abc123.execute-api.eu-west-1.amazonaws.com');
    expect(linkOrigin(event, 'https://api.example.com')).toBe('https://api.example.com');
    expect(linkOrigin(event)).toBe('https://abc123.execute-api.eu-west-1.amazonaws.com');
    expect(linkOrigin(eventFor('/api/metrics', 'evil.example/path?'))).toBe('');
    expect(linkOrigin(eventFor('/api/metrics', 'localhost:3000'))).toBe('http://localhost:3000');
  });
});
