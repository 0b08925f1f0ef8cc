/**
 * A transport delivers a feed's changes to a replica. Delivery may be imperfect — gaps,
 * duplicates, reordering, other epochs — because the replica checks every delivery against its
 * checkpoint and heals anything that does not follow on by pulling from the log (FeedSource).
 * HTTP long-poll is the default; broker transports (NATS JetStream, RabbitMQ) implement the same.
 */
import type { Change, Seq } from '../protocol/types.js'

export interface Delivery {
  epoch: string
  /** Changes in the order received; ideally whole source transactions following the checkpoint. */
  changes: Change[]
  /** The source's head as the transport knows it, if it does. */
  head?: Seq
  /** Called after the changes are applied and committed (or found to be already applied). */
  ack?(): Promise<void>
}

export interface SubscribeOptions {
  epoch: string
  /** The replica's checkpoint now: where a pulling transport continues from. */
  position(): Seq
  signal: AbortSignal
}

export interface ChangeTransport {
  readonly name: string
  subscribe(feed: string, options: SubscribeOptions): AsyncIterable<Delivery>
}
