import { randomUUID } from 'node:crypto';

/**
 * Errors that become JSON:API error documents, shaped as Klaviyo's: each error object has its own
 * `id` (a UUID a client can quote in a support request), and a body that fails validation is a 400
 * with the pointer of each problem, as Klaviyo answers it (its spec lists 400 for client errors). Domain code throws these by type; the handler
 * wrapper maps them to responses, and everything else to a fixed 500 (or a 503 when transient).
 */
export interface ApiErrorObject {
  readonly id: string;
  readonly status: string;
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  readonly source?: { readonly pointer?: string; readonly parameter?: string; readonly header?: string };
}

export interface ErrorItem {
  readonly code: string;
  readonly detail: string;
  readonly pointer?: string;
  readonly parameter?: string;
  readonly header?: string;
  /** Extra members Klaviyo puts on some errors, e.g. { duplicate_profile_id } on a 409. */
  readonly meta?: Readonly<Record<string, unknown>>;
}

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Not authenticated',
  403: 'Permission denied',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Conflict',
  413: 'Payload too large',
  415: 'Unsupported media type',
  422: 'Invalid input',
  429: 'Too many requests',
  500: 'Internal server error',
  503: 'Service unavailable',
};

export class HttpError extends Error {
  override readonly name: string = 'HttpError';
  readonly items: readonly ErrorItem[];
  constructor(
    readonly status: number,
    items: ErrorItem | readonly ErrorItem[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    const list = Array.isArray(items) ? (items as readonly ErrorItem[]) : [items as ErrorItem];
    super(list.map((i) => i.detail).join('; '));
    this.items = list;
  }

  toJsonApi(): ApiErrorObject[] {
    const title = TITLES[this.status] ?? 'Error';
    return this.items.map((item) => ({
      id: randomUUID(),
      status: String(this.status),
      code: item.code,
      title,
      detail: item.detail,
      ...(item.pointer !== undefined || item.parameter !== undefined || item.header !== undefined
        ? {
            source: {
              ...(item.pointer !== undefined ? { pointer: item.pointer } : {}),
              ...(item.parameter !== undefined ? { parameter: item.parameter } : {}),
              ...(item.header !== undefined ? { header: item.header } : {}),
            },
          }
        : {}),
      ...(item.meta !== undefined ? { meta: item.meta } : {}),
    }));
  }
}

/** A request body that fails validation: 400, as Klaviyo answers, each problem with its pointer. */
export const invalidInput = (items: readonly ErrorItem[]) => new HttpError(400, items);
