/**
 * What the ingest routes need of a queue in queue mode (docs/queue.md): sending the messages of one
 * request. lib/queue/sqs.ts implements it with SQS.
 */
export interface MessageSender {
  /** Resolves when every message is queued; rejects with QueueSendError when some are not. */
  send(bodies: readonly string[]): Promise<void>;
}

/** Some of a request's messages were not queued (after the sender's own retry). */
export class QueueSendError extends Error {
  override readonly name = 'QueueSendError';
  constructor(
    readonly sent: number,
    readonly failed: number,
    readonly failureCodes: readonly string[],
    override readonly cause?: unknown,
  ) {
    super(`${failed} of ${sent + failed} queue messages were not sent`);
  }
}
