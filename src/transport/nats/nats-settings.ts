/**
 * Where a feed lives in JetStream and how its stream is set up (docs/brokers.md, "NATS JetStream").
 * One stream per feed, `tidemark_<feed>` (a `.` in the feed's name becomes `~`, which stream names
 * allow and feed names do not), capturing `tidemark.<feed>.*`; each epoch publishes on its own
 * subject `tidemark.<feed>.<epoch>`, so a replica's consumer never sees another history's messages.
 */
import { connect } from '@nats-io/transport-node'
import type { NatsConnection, WithRequired } from '@nats-io/nats-core'
import type { StreamConfig } from '@nats-io/jetstream'
import { BrokerUnavailableError } from '../../errors.js'

export interface NatsStreamSettings {
  /** Drop messages older than this (ms); 0 keeps them by age forever. Default 7 days. */
  maxAgeMs?: number
  /** Keep at most this many bytes of messages (oldest go first); -1 is unlimited (default). */
  maxBytes?: number
  /** Keep at most this many messages; -1 is unlimited (default). */
  maxMessages?: number
  /** Copies of the stream in a clustered NATS (1, 3 or 5). Default 1. */
  replicas?: number
  /** How long JetStream remembers message ids to drop a republished message (ms). Default 2 minutes. */
  duplicateWindowMs?: number
  /** `file` (default) or `memory`. */
  storage?: 'file' | 'memory'
}

export interface NatsConnectOptions {
  /** `nats://[user:pass@]host:port`, or several for a cluster. */
  servers: string | string[]
  /** Subject and stream name prefix. Default `tidemark`. */
  prefix?: string
  /** Give up connecting after this long (ms); a refused connection fails at once. Default 5 000. */
  connectTimeoutMs?: number
}

export function streamName(feed: string, prefix = 'tidemark'): string {
  return `${prefix}_${feed.replaceAll('.', '~')}`
}

export function feedSubject(feed: string, epoch: string, prefix = 'tidemark'): string {
  return `${prefix}.${feed}.${epoch}`
}

export function streamSubjects(feed: string, prefix = 'tidemark'): string {
  return `${prefix}.${feed}.*`
}

const MS = 1_000_000 // JetStream counts time in nanoseconds

export function streamConfig(feed: string, prefix: string, settings: NatsStreamSettings): WithRequired<Partial<StreamConfig>, 'name'> {
  return {
    name: streamName(feed, prefix),
    subjects: [streamSubjects(feed, prefix)],
    max_age: (settings.maxAgeMs ?? 7 * 24 * 3600_000) * MS,
    max_bytes: settings.maxBytes ?? -1,
    max_msgs: settings.maxMessages ?? -1,
    num_replicas: settings.replicas ?? 1,
    duplicate_window: (settings.duplicateWindowMs ?? 120_000) * MS,
    storage: settings.storage ?? 'file',
  }
}

/**
 * One connection, without the client's own reconnecting: a cut connection ends what uses it, and
 * tidemark's own loops (the relay's resync, the replica's fallback to the log) take over.
 */
export async function natsConnect(options: NatsConnectOptions): Promise<NatsConnection> {
  try {
    return await connect({ servers: options.servers, reconnect: false, timeout: options.connectTimeoutMs ?? 5000, name: 'tidemark' })
  } catch (error) {
    throw new BrokerUnavailableError(`cannot connect to NATS at ${describeServers(options.servers)}: ${(error as Error).message}`, error)
  }
}

/** The servers without credentials, for messages. */
export function describeServers(servers: string | string[]): string {
  return (Array.isArray(servers) ? servers : [servers]).map((s) => s.replace(/\/\/[^@/]*@/, '//')).join(',')
}
