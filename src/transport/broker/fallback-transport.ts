/**
 * A broker transport with the log behind it: deliveries come from the broker while it can be
 * reached; when it cannot (it is down, the connection was cut, its stream or queue is gone), the
 * replica long-polls the log instead and tries the broker again every `retryMs`, going back to it
 * as soon as it answers. Only BrokerUnavailableError switches over: anything else the broker
 * transport throws is the replica's to handle, as is anything the long-poll throws.
 */
import { BrokerUnavailableError } from '../../errors.js'
import { silentLogger, type Logger } from '../../store/store.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../transport.js'

export interface FallbackOptions {
  /** How long to stay on the fallback before trying the broker again (ms). Default 5 000. */
  retryMs?: number
  logger?: Logger
}

export class FallbackTransport implements ChangeTransport {
  readonly name: string
  private using: 'broker' | 'fallback' = 'broker'
  private readonly retryMs: number
  private readonly logger: Logger

  constructor(
    private readonly broker: ChangeTransport,
    private readonly fallback: ChangeTransport,
    options: FallbackOptions = {},
  ) {
    this.name = `${broker.name}+${fallback.name}`
    this.retryMs = options.retryMs ?? 5000
    this.logger = options.logger ?? silentLogger
  }

  /** Which one delivers now. */
  get current(): 'broker' | 'fallback' {
    return this.using
  }

  async *subscribe(feed: string, options: SubscribeOptions): AsyncGenerator<Delivery> {
    const { signal } = options
    for (;;) {
      signal.throwIfAborted()
      try {
        this.using = 'broker'
        yield* this.broker.subscribe(feed, options)
      } catch (error) {
        if (signal.aborted || !(error instanceof BrokerUnavailableError)) throw error
        this.logger.warn({ feed, err: error.message }, `${error.message}; following the log over ${this.fallback.name} and trying ${this.broker.name} again in ${this.retryMs} ms`)
      }
      this.using = 'fallback'
      const window = new AbortController()
      const onAbort = (): void => window.abort(signal.reason)
      signal.addEventListener('abort', onAbort, { once: true })
      const timer = setTimeout(() => window.abort(new Error('time to try the broker again')), this.retryMs)
      try {
        for await (const delivery of this.fallback.subscribe(feed, { ...options, signal: window.signal })) yield delivery
      } catch (error) {
        // The window closing aborts the long-poll in flight: that is the cue to try the broker.
        if (signal.aborted || !window.signal.aborted) throw error
      } finally {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
      }
    }
  }
}
