/**
 * Fuzzing the replica's decoders of a feed server's lines (TIDEMARK_RUNS, TIDEMARK_SEED): any text,
 * and valid lines with bytes changed, either decode to something every check passed or throw
 * ProtocolError — never another exception, never a change with a seq, tx or key out of bounds.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { describe, it } from 'node:test'
import { ProtocolError } from '../../src/errors.js'
import { LIMITS } from '../../src/protocol/limits.js'
import { decodeChangesLine, decodeRowsDocument, decodeSnapshotLine } from '../../src/transport/http/wire-lines.js'
import { propertyParameters } from '../helpers/property.js'
import { changeLine } from './helpers.js'

/** A valid line with a few characters replaced, inserted or cut. */
const spoiled = (valid: fc.Arbitrary<string>) =>
  fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'cut'), fc.string({ maxLength: 3 })), { maxLength: 3 })).map(([line, edits]) => {
    let s = line
    for (const [at, how, text] of edits) {
      const i = at % (s.length + 1)
      s = how === 'replace' ? s.slice(0, i) + text + s.slice(i + text.length) : how === 'insert' ? s.slice(0, i) + text + s.slice(i) : s.slice(0, i)
    }
    return s
  })

const changeLines = fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.string({ minLength: 1, maxLength: 6 }), fc.json({ maxDepth: 2 })).map(([seq, key, data]) => changeLine(seq, seq, data, key))
const rowLines = fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 1000 }), fc.json({ maxDepth: 2 })).map(([key, seq, data]) => `{"key":${JSON.stringify(key)},"seq":${seq},"data":${data}}`)

function onlyProtocolErrors(decode: () => unknown): unknown {
  try {
    return decode()
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${String(error)}`)
    return undefined
  }
}

describe('wire-line decoders under fuzzing', () => {
  it('changes lines: a checked change, an end or error line, or ProtocolError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 80 }), spoiled(changeLines)), (text) => {
        const decoded = onlyProtocolErrors(() => decodeChangesLine(text)) as ReturnType<typeof decodeChangesLine> | undefined
        if (decoded?.kind !== 'item') return
        const c = decoded.item
        assert.ok(Number.isSafeInteger(c.seq) && c.seq > 0 && c.tx >= c.seq)
        assert.ok(c.key.length > 0 && Buffer.byteLength(c.key) <= LIMITS.keyBytes)
        assert.equal(c.dataText === null, c.op === 'delete')
      }),
      propertyParameters(2000),
    )
  })

  it('snapshot lines and rows documents: checked rows or ProtocolError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 80 }), spoiled(rowLines)), (text) => {
        const decoded = onlyProtocolErrors(() => decodeSnapshotLine(text)) as ReturnType<typeof decodeSnapshotLine> | undefined
        if (decoded?.kind === 'item') assert.ok(decoded.item.seq > 0 && decoded.item.key.length > 0)
        onlyProtocolErrors(() => decodeRowsDocument(`{"epoch":"e1","head":5,"rows":[${text}]}`))
      }),
      propertyParameters(2000),
    )
  })
})
