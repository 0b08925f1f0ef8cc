import { createServer, connect, type Socket } from 'node:net'
import { after } from 'node:test'

export interface TcpProxy {
  port: number
  /** Cuts every connection through the proxy now (the broker itself stays up). */
  cut(): void
  /** While true, new connections are closed at once: the broker looks unreachable. */
  refusing: boolean
}

/** A TCP proxy to 127.0.0.1:`target`, to cut a client's connection to a shared broker. */
export async function tcpProxy(target: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  const proxy: TcpProxy = {
    port: 0,
    refusing: false,
    cut() {
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
  }
  const server = createServer((client) => {
    if (proxy.refusing) {
      client.destroy()
      return
    }
    const upstream = connect({ host: '127.0.0.1', port: target })
    sockets.add(client)
    sockets.add(upstream)
    const close = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.port = (server.address() as { port: number }).port
  after(() => {
    proxy.cut()
    server.close()
  })
  return proxy
}
