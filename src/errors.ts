/**
 * Every error tidemark raises on purpose is a `TidemarkError` with a stable `code`.
 * The codes are part of the protocol (docs/protocol.md lists them); `HTTP_STATUS` and
 * `EXIT_CODE` below are the one place that maps them to HTTP statuses and CLI exit codes.
 */

export const ERROR_CODES = [
  'bad-request',
  'unknown-feed',
  'log-truncated',
  'epoch-changed',
  'unauthorized',
  'forbidden',
  'too-large',
  'not-a-store',
  'schema-too-new',
  'digest-damaged',
  'store-unavailable',
  'broker-unavailable',
  'busy',
  'rate-limited',
  'conflict',
  'protocol',
  'not-a-feed-server',
  'apply-failed',
  'internal',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

export const HTTP_STATUS: Record<ErrorCode, number> = {
  'bad-request': 400,
  'unknown-feed': 404,
  'log-truncated': 410,
  'epoch-changed': 409,
  unauthorized: 401,
  forbidden: 403,
  'too-large': 413,
  'not-a-store': 500,
  'schema-too-new': 500,
  'digest-damaged': 500,
  'store-unavailable': 503,
  'broker-unavailable': 503,
  busy: 503,
  'rate-limited': 429,
  conflict: 409,
  protocol: 502,
  'not-a-feed-server': 502,
  'apply-failed': 500,
  internal: 500,
}

/**
 * The CLI's exit statuses, every command's (docs/cli.md has the table, and a test holds the two
 * together). Where a BSD sysexits code says the same thing it is used (64 usage, 70 software, 78
 * configuration); the small numbers are tidemark's own. 1 is never set on purpose: node exits 1
 * when it cannot even start the program. `npm run bench` uses `usage` too.
 */
export const EXIT = {
  /** Done (verify/repair: intact, or repaired). */
  ok: 0,
  /** The source's history went away under the replica (log truncated, epoch changed): re-bootstrap. */
  history: 2,
  /** A store, broker or feed server cannot be used right now, or broke its side of the protocol. */
  unavailable: 3,
  /** The replica's projection hook threw. */
  applyFailed: 4,
  /** The operation conflicts with the current state (a replica held elsewhere or bound to another source). */
  conflict: 5,
  /** No feed of that name. */
  unknownFeed: 6,
  /** The feed server refused the token. */
  unauthorized: 7,
  /** verify: drift found (or the source's history went back). */
  drift: 10,
  /** verify/repair: could not check. */
  unchecked: 11,
  /** The command line is wrong: an unknown option, a missing argument, a value that is not valid. */
  usage: 64,
  /** A bug: an error nobody planned for. */
  unexpected: 70,
  /** The configuration points at the wrong thing (a URL that is not a tidemark feed server). */
  config: 78,
  /** Stopped by SIGINT/SIGTERM before it finished (export, import), or a second signal while closing. */
  interrupted: 130,
} as const

/** Which exit status each error code ends a command with: the one mapping of typed errors to exit codes. */
export const EXIT_CODE: Record<ErrorCode, number> = {
  'bad-request': EXIT.usage,
  'too-large': EXIT.usage,
  'unknown-feed': EXIT.unknownFeed,
  unauthorized: EXIT.unauthorized,
  forbidden: EXIT.unauthorized,
  conflict: EXIT.conflict,
  'log-truncated': EXIT.history,
  'epoch-changed': EXIT.history,
  'not-a-store': EXIT.unavailable,
  'schema-too-new': EXIT.unavailable,
  'digest-damaged': EXIT.unavailable,
  'store-unavailable': EXIT.unavailable,
  'broker-unavailable': EXIT.unavailable,
  busy: EXIT.unavailable,
  'rate-limited': EXIT.unavailable,
  protocol: EXIT.unavailable,
  'not-a-feed-server': EXIT.config,
  'apply-failed': EXIT.applyFailed,
  internal: EXIT.unexpected,
}

export class TidemarkError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'TidemarkError'
    this.code = code
    this.details = options.details ?? {}
  }

  get status(): number {
    return HTTP_STATUS[this.code]
  }

  toJSON(): { error: ErrorCode; message: string } & Record<string, unknown> {
    return { error: this.code, message: this.message, ...this.details }
  }
}

export class BadRequestError extends TidemarkError {
  constructor(message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super('bad-request', message, options)
    this.name = 'BadRequestError'
  }
}

export class UnknownFeedError extends TidemarkError {
  constructor(readonly feed: string) {
    super('unknown-feed', `unknown feed "${feed}": list the feeds with \`tidemark feeds\` or GET /v1/feeds`, {
      details: { feed },
    })
    this.name = 'UnknownFeedError'
  }
}

export class LogTruncatedError extends TidemarkError {
  constructor(
    readonly feed: string,
    readonly after: number,
    readonly minSeq: number,
  ) {
    super(
      'log-truncated',
      `feed "${feed}" keeps changes from seq ${minSeq} on; position ${after} is ${minSeq - 1 - after} changes older: ` +
        're-bootstrap from the snapshot, and raise the feed\'s retention to avoid this',
      { details: { feed, after, minSeq } },
    )
    this.name = 'LogTruncatedError'
  }
}

export class EpochChangedError extends TidemarkError {
  constructor(
    readonly feed: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      'epoch-changed',
      `feed "${feed}" has epoch ${actual}, not ${expected}: its history was reset, so a replica must re-bootstrap`,
      { details: { feed, epoch: actual } },
    )
    this.name = 'EpochChangedError'
  }
}

export class TooLargeError extends TidemarkError {
  constructor(message: string) {
    super('too-large', message)
    this.name = 'TooLargeError'
  }
}

export class NotAStoreError extends TidemarkError {
  constructor(message: string, cause?: unknown) {
    super('not-a-store', message, { cause })
    this.name = 'NotAStoreError'
  }
}

/** A store written by a newer tidemark: this one cannot read it safely. Upgrade tidemark. */
export class SchemaTooNewError extends TidemarkError {
  constructor(
    readonly location: string,
    readonly version: number,
    readonly known: number,
  ) {
    super(
      'schema-too-new',
      `${location} has tidemark schema ${version}, written by a newer tidemark; this one knows up to ${known}: upgrade tidemark (nothing was changed)`,
      { details: { version, known } },
    )
    this.name = 'SchemaTooNewError'
  }
}

/** The stored digest does not hold what a digest holds: rebuild it (`tidemark verify --deep` on a replica). */
export class DigestDamagedError extends TidemarkError {
  constructor(message: string) {
    super('digest-damaged', message)
    this.name = 'DigestDamagedError'
  }
}

export class StoreUnavailableError extends TidemarkError {
  constructor(message: string, cause?: unknown) {
    super('store-unavailable', message, { cause })
    this.name = 'StoreUnavailableError'
  }
}

/** The source's head (or digest position) went below a replica's checkpoint, with the same epoch: its history was rewound. */
export class HistoryRewoundError extends TidemarkError {
  constructor(
    readonly feed: string,
    readonly head: number,
    readonly checkpoint: number,
  ) {
    super(
      'epoch-changed',
      `feed "${feed}" is at head ${head}, behind this replica's checkpoint ${checkpoint}, with the same epoch: ` +
        'the source was restored from an older copy; re-bootstrapping so the replica keeps nothing the source no longer has',
      { details: { feed, head, checkpoint } },
    )
    this.name = 'HistoryRewoundError'
  }
}

/** A message broker (NATS, RabbitMQ) cannot be reached or refused an operation; the log still can be read. */
export class BrokerUnavailableError extends TidemarkError {
  constructor(message: string, cause?: unknown) {
    super('broker-unavailable', message, { cause })
    this.name = 'BrokerUnavailableError'
  }
}

/**
 * The feed server is at one of its limits (concurrent exports or long-polls): nothing is wrong with
 * the request, ask again after `retryAfterS` seconds (sent as the Retry-After header too).
 */
export class BusyError extends TidemarkError {
  constructor(
    message: string,
    readonly retryAfterS: number,
    code: 'busy' | 'rate-limited' = 'busy',
  ) {
    super(code, message, { details: { retryAfter: retryAfterS } })
    this.name = 'BusyError'
  }
}

export class ProtocolError extends TidemarkError {
  constructor(message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super('protocol', message, options)
    this.name = 'ProtocolError'
  }
}

/**
 * An HTTP server answered, but not as a tidemark feed server does (no protocol header): the URL
 * points at something else — a web server, a proxy's page. Asking again will not change that.
 */
export class NotAFeedServerError extends TidemarkError {
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super('not-a-feed-server', message, options)
    this.name = 'NotAFeedServerError'
  }
}

export class ConflictError extends TidemarkError {
  constructor(message: string, cause?: unknown) {
    super('conflict', message, { cause })
    this.name = 'ConflictError'
  }
}

/** A replica's projection hook threw: the change was not applied and the replica stopped on it. */
export class ApplyFailedError extends TidemarkError {
  constructor(
    readonly seq: number,
    readonly key: string,
    cause: unknown,
  ) {
    super(
      'apply-failed',
      `the apply hook failed on change ${seq} (key ${JSON.stringify(key)}): ${cause instanceof Error ? cause.message : String(cause)}; ` +
        'nothing of its transaction was applied — fix the hook and restart, the replica resumes at this change',
      { cause, details: { seq, key } },
    )
    this.name = 'ApplyFailedError'
  }
}

export function isTidemarkError(error: unknown): error is TidemarkError {
  return error instanceof TidemarkError
}

/** Wraps anything thrown into a TidemarkError, keeping the original as `cause`. */
export function asTidemarkError(error: unknown): TidemarkError {
  if (error instanceof TidemarkError) return error
  const message = error instanceof Error ? error.message : String(error)
  return new TidemarkError('internal', message, { cause: error })
}
