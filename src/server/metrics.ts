import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { FeedInfo } from '../protocol/types.js'
import type { SourceStore } from '../store/store.js'

/**
 * The feed server's Prometheus metrics, in a registry of its own: two servers in one process (a
 * test, a demo) must not clash, so nothing goes into prom-client's global default registry.
 */
export class ServerMetrics {
  readonly registry = new Registry()
  readonly requests: Counter<'method' | 'route' | 'status'>
  readonly duration: Histogram<'method' | 'route' | 'status'>
  readonly longPolls: Gauge
  readonly changesStreamed: Counter<'feed'>

  constructor(store: SourceStore) {
    const registers = [this.registry]
    this.requests = new Counter({
      name: 'tidemark_http_requests_total',
      help: 'HTTP requests answered, by route and status ("aborted" when the client went away first)',
      labelNames: ['method', 'route', 'status'],
      registers,
    })
    this.duration = new Histogram({
      name: 'tidemark_http_request_duration_seconds',
      help: 'Time from a request to the end of its response, long-polls included',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60],
      registers,
    })
    this.longPolls = new Gauge({
      name: 'tidemark_long_polls_open',
      help: 'Changes requests waiting for a commit right now',
      registers,
    })
    this.changesStreamed = new Counter({
      name: 'tidemark_changes_streamed_total',
      help: 'Changes written to replicas, by feed',
      labelNames: ['feed'],
      registers,
    })
    // Per-feed values are read from the store when scraped, not kept up to date on every write.
    const perFeed = (name: string, help: string, pick: (f: FeedInfo) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['feed'],
        registers,
        async collect() {
          const feeds = await store.listFeeds()
          this.reset()
          for (const f of feeds) this.set({ feed: f.name }, pick(f))
        },
      })
    }
    perFeed('tidemark_feed_head', 'Highest committed seq of the feed', (f) => f.head)
    perFeed('tidemark_feed_min_seq', 'Oldest seq the feed\'s log still keeps', (f) => f.minSeq)
    perFeed('tidemark_feed_keys', 'Live keys of the feed, as of its digest_seq', (f) => f.keys)
    perFeed('tidemark_feed_digest_lag', 'Changes not yet folded into the feed\'s digest (head - digestSeq)', (f) => f.head - f.digestSeq)
  }

  /** Counts one request once its response ended or its client went away. */
  observe(method: string, route: string, status: string, seconds: number): void {
    const labels = { method, route, status }
    this.requests.inc(labels)
    this.duration.observe(labels, seconds)
  }
}
