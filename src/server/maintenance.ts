import type { Logger, SourceStore } from '../store/store.js'

/**
 * Calls `store.maintain()` (digest catch-up, retention, restore detection) every `everyMs`, one
 * pass at a time: the next pass is scheduled only when the previous one has finished, so a slow
 * pass never overlaps another. A failing pass is logged and the next one runs as usual.
 */
export class MaintenanceLoop {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = false

  constructor(
    private readonly store: SourceStore,
    private readonly everyMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (this.everyMs <= 0 || this.stopped) return
    this.schedule()
  }

  /** Stops scheduling and waits for a pass under way, so that the store may be closed next. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.running = this.pass().finally(() => {
        this.running = undefined
        this.schedule()
      })
    }, this.everyMs)
    // Maintenance alone never keeps a process alive; the listening socket does.
    this.timer.unref()
  }

  private async pass(): Promise<void> {
    try {
      const result = await this.store.maintain()
      if (result.digested > 0 || result.pruned > 0 || result.reset.length > 0) {
        this.logger.debug({ ...result }, 'maintenance pass')
      }
    } catch (error) {
      this.logger.error(
        { err: error, store: this.store.location },
        `maintenance of ${this.store.location} failed (digest and retention are behind; retrying in ${this.everyMs} ms): ${(error as Error)?.message ?? String(error)}`,
      )
    }
  }
}
