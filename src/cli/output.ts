/** Thrown by `LineWriter` when the reader went away (EPIPE: `tidemark dump … | head`). Not an error to report. */
export class OutputClosedError extends Error {
  constructor(cause?: unknown) {
    super('output closed by the reader', cause === undefined ? undefined : { cause })
    this.name = 'OutputClosedError'
  }
}

/** The part of a writable stream `LineWriter` uses (process.stdout in the CLI, any stream in tests). */
export interface WritableLike {
  write(chunk: string): boolean
  once(event: 'drain' | 'error' | 'close', listener: (error?: Error) => void): unknown
  on(event: 'error', listener: (error: Error) => void): unknown
  removeListener(event: 'drain' | 'error' | 'close', listener: (error?: Error) => void): unknown
}

/**
 * Writes lines to a stream with backpressure: lines are gathered into chunks of about `chunkBytes`,
 * and when the stream's buffer is full (`write` returns false) the next write waits for 'drain'.
 * Memory is bounded by one chunk plus the stream's high-water mark, whatever the output's size.
 * When the reader closes the pipe, the pending and every later write reject with OutputClosedError.
 */
export class LineWriter {
  private buffer: string[] = []
  private bufferedBytes = 0
  private closedBy: Error | undefined
  private readonly chunkBytes: number

  constructor(
    private readonly stream: WritableLike,
    options: { chunkBytes?: number } = {},
  ) {
    this.chunkBytes = options.chunkBytes ?? 64 * 1024
    // A closed pipe is reported as an 'error' event, possibly after our last write: keep it from
    // becoming an uncaught exception, and remember it for the next write.
    stream.on('error', (error) => {
      this.closedBy ??= error
    })
  }

  get closed(): boolean {
    return this.closedBy !== undefined
  }

  /** Adds one line (without its newline); flushes when the chunk is full. */
  async line(text: string): Promise<void> {
    this.buffer.push(text, '\n')
    this.bufferedBytes += text.length + 1
    if (this.bufferedBytes >= this.chunkBytes) await this.flush()
  }

  /** Writes what is gathered and waits until the stream can take more. */
  async flush(): Promise<void> {
    this.check()
    if (this.buffer.length === 0) return
    const chunk = this.buffer.join('')
    this.buffer = []
    this.bufferedBytes = 0
    if (!this.stream.write(chunk)) await this.drain()
    this.check()
  }

  private check(): void {
    if (this.closedBy) throw closedError(this.closedBy)
  }

  private drain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        this.stream.removeListener('drain', onDrain)
        this.stream.removeListener('error', onError)
        this.stream.removeListener('close', onClose)
        if (error) {
          this.closedBy ??= error
          reject(closedError(error))
        } else resolve()
      }
      const onDrain = (): void => done()
      const onError = (error?: Error): void => done(error ?? new Error('write error'))
      const onClose = (): void => done(new Error('stream closed'))
      this.stream.once('drain', onDrain)
      this.stream.once('error', onError)
      this.stream.once('close', onClose)
    })
  }
}

function closedError(error: Error): Error {
  const code = (error as { code?: string }).code
  // The reader going away is the normal end of `… | head`; any other write error is real.
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || error.message === 'stream closed' ? new OutputClosedError(error) : error
}
