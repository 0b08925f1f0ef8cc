import type { Socket } from 'node:net'
import { buildConnector } from 'undici'

/**
 * Counts what an HttpFeedSource exchanges, on its sockets: request lines, headers and bodies both
 * ways, as they cross the wire (chunked framing included). Sockets are shared by keep-alive
 * requests, so counting them is exact where per-request estimates of headers are not.
 */
export class TrafficCounter {
  requests = 0
  private readonly open = new Set<Socket>()
  /** Bytes of sockets already closed. */
  private closedSent = 0
  private closedReceived = 0

  /** An undici `connect` function: the default connector (with these TLS options for https), with every socket it opens counted. */
  connector(tls: buildConnector.BuildOptions = {}): buildConnector.connector {
    const connect = buildConnector(tls)
    return (options, callback) => {
      connect(options, (...args) => {
        const socket = args[1]
        if (socket) this.track(socket)
        callback(...args)
      })
    }
  }

  sent(): number {
    let n = this.closedSent
    for (const s of this.open) n += s.bytesWritten
    return n
  }

  received(): number {
    let n = this.closedReceived
    for (const s of this.open) n += s.bytesRead
    return n
  }

  private track(socket: Socket): void {
    this.open.add(socket)
    socket.once('close', () => {
      this.open.delete(socket)
      this.closedSent += socket.bytesWritten
      this.closedReceived += socket.bytesRead
    })
  }
}
