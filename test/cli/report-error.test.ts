import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { reportError } from '../../src/cli/report-error.js'
import { OutputClosedError } from '../../src/cli/output.js'
import { ERROR_CODES, EXIT_CODE, LogTruncatedError, StoreUnavailableError, TidemarkError } from '../../src/errors.js'

function report(error: unknown, verbose = false): { code: number; text: string } {
  let text = ''
  const code = reportError(error, { verbose, write: (t) => (text += t) })
  return { code, text }
}

describe('reportError', () => {
  it('maps every error code through EXIT_CODE', () => {
    for (const code of ERROR_CODES) assert.equal(report(new TidemarkError(code, 'x')).code, EXIT_CODE[code], code)
    assert.equal(report(new LogTruncatedError('f', 1, 10)).code, 2)
  })

  it('writes one line, with the cause only when it adds something', () => {
    const cause = Object.assign(new Error('permission denied'), { code: 'EACCES' })
    assert.deepEqual(report(new StoreUnavailableError('shop.db is read-only', cause)), {
      code: 3,
      text: 'tidemark: shop.db is read-only (cause: EACCES: permission denied)\n',
    })
    const said = new Error('disk full')
    assert.equal(report(new StoreUnavailableError('cannot write: disk full', said)).text, 'tidemark: cannot write: disk full\n')
    assert.equal(report(new TidemarkError('bad-request', 'two\n  lines')).text, 'tidemark: two lines\n')
  })

  it('reports the unexpected with exit 70, and stacks only with --verbose', () => {
    const quiet = report(new TypeError('x is undefined'))
    assert.deepEqual(quiet, { code: 70, text: 'tidemark: unexpected error: x is undefined (run again with --verbose for the stack trace)\n' })
    const loud = report(new TypeError('x is undefined', { cause: new Error('deeper') }), true)
    assert.equal(loud.code, 70)
    assert.match(loud.text, /^tidemark: unexpected error: x is undefined \(cause: deeper\)\nTypeError: x is undefined\n\s+at /)
    assert.match(loud.text, /\ncaused by: Error: deeper\n\s+at /)
    assert.equal(report('a string').text, 'tidemark: unexpected error: a string (run again with --verbose for the stack trace)\n')
  })

  it('ends quietly with 0 when the reader closed the output', () => {
    assert.deepEqual(report(new OutputClosedError()), { code: 0, text: '' })
  })
})
