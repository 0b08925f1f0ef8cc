import { isUtf8 } from 'node:buffer'
import { ProtocolError } from '../../errors.js'

/**
 * Splits an NDJSON body into lines as its chunks arrive, without ever holding more than one line
 * beyond the current chunk. A line split across chunks is joined once, when its newline comes
 * (a newline byte never occurs inside a multi-byte UTF-8 character, so splitting bytes is safe).
 * Empty lines are skipped; a line that is not UTF-8 or is longer than `maxLineBytes` is a
 * ProtocolError.
 */
export class LineSplitter {
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** Complete lines handed out so far. */
  lines = 0

  constructor(private readonly maxLineBytes: number) {}

  /** Bytes of a line begun but not ended: non-zero after the last chunk means the body was cut mid-line. */
  get partialBytes(): number {
    return this.pendingBytes
  }

  /** Feeds one chunk; calls `onLine` for every line it completes (an exception from it stops the split). */
  push(chunk: Buffer, onLine: (line: string) => void): void {
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(0x0a, start)
      if (nl < 0) break
      let bytes = chunk.subarray(start, nl)
      if (this.pendingBytes > 0) {
        this.pending.push(bytes)
        bytes = Buffer.concat(this.pending, this.pendingBytes + bytes.length)
        this.pending = []
        this.pendingBytes = 0
      }
      start = nl + 1
      if (bytes.length === 0) continue
      this.check(bytes.length)
      if (!isUtf8(bytes)) throw new ProtocolError(`line ${this.lines + 1} of the response is not UTF-8`)
      this.lines++
      onLine(bytes.toString('utf8'))
    }
    if (start < chunk.length) {
      this.pending.push(chunk.subarray(start))
      this.pendingBytes += chunk.length - start
      this.check(this.pendingBytes)
    }
  }

  private check(bytes: number): void {
    if (bytes > this.maxLineBytes) {
      throw new ProtocolError(
        `line ${this.lines + 1} of the response is over ${this.maxLineBytes} bytes, longer than the protocol allows: the rest of the response is not read and nothing of it is used`,
      )
    }
  }
}
