import type { Logger } from '../store/store.js'

/** The same logger with its info lines as debug lines (warnings, such as retries, stay warnings). */
export function demoted(logger: Logger): Logger {
  return { debug: logger.debug.bind(logger), info: logger.debug.bind(logger), warn: logger.warn.bind(logger), error: logger.error.bind(logger) }
}
