import type { Suite } from '../suite.js'
import { postgres } from './postgres.js'
import { exportSuite } from './export.js'
import { reconcileSuite } from './reconcile.js'
import { brokers } from './brokers.js'
import { replica } from './replica.js'
import { source } from './source.js'

/** Every suite, in the order a full run takes them. A new suite is one more line here. */
export const SUITES: readonly Suite[] = [
  source,
  replica,
  reconcileSuite,
  exportSuite,
  brokers,
  postgres,
]
