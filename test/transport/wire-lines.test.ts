import assert from 'node:assert/strict'
import fc from 'fast-check'
import { describe, it } from 'node:test'
import { ProtocolError } from '../../src/errors.js'
import { encodeChange, encodeRow, StoredChange, StoredRow } from '../../src/protocol/encoded.js'
import { LineSplitter } from '../../src/transport/http/line-splitter.js'
import { compareKeys } from '../../src/protocol/key-order.js'
import { decodeChangesLine, decodeRowsDocument, decodeSnapshotLine } from '../../src/transport/http/wire-lines.js'
import { propertyParameters } from '../helpers/property.js'

function change(line: string): StoredChange {
  const d = decodeChangesLine(line)
  assert.equal(d.kind, 'item', line)
  return (d as { item: StoredChange }).item
}

function row(line: string): StoredRow {
  const d = decodeSnapshotLine(line)
  assert.equal(d.kind, 'item', line)
  return (d as { item: StoredRow }).item
}

/** Data texts as a store could hold them: compact, spaced, escaped, nested, scalar. */
const ODD_DATA = [
  '{"a":1}',
  '{ "a" : 1 ,\t"b" : [ 1 , 2 ] }',
  '{"s":"\\u00e9\\u2028\\ud83d\\ude00 \\"quoted\\" \\\\ back"}',
  '{"x":"}","y":"\\"}","tx":1,"ts":2}',
  '[]',
  '"just a string with , and }"',
  '"\\\\"',
  '"ends in \\\\ and \\""',
  '12.50',
  '-0',
  '1e+300',
  'null',
  'true',
  '{"deep":[[[{"a":[{}]}]]]}',
  '{"é":"日本語","emoji":"😀"}',
]

describe('wire lines: changes', () => {
  it('reads the encoder exact shape, keeping data text byte for byte', () => {
    for (const text of ODD_DATA) {
      const line = encodeChange(new StoredChange(7, 'k"\\ü', 'upsert', 9, 1764072000123, text))
      const c = change(line)
      assert.equal(c.dataText, text)
      assert.deepEqual([c.seq, c.key, c.op, c.tx, c.ts], [7, 'k"\\ü', 'upsert', 9, 1764072000123])
      assert.equal(encodeChange(c), line, 'encodes back to the same line')
    }
    const del = change('{"seq":3,"key":"a","op":"delete","tx":3,"ts":0}')
    assert.equal(del.dataText, null)
    assert.equal(del.data, undefined)
  })

  it('round-trips any change the encoder writes (property)', () => {
    const arb = fc
      .record({
        seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER - 100 }),
        extra: fc.integer({ min: 0, max: 100 }),
        key: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
        op: fc.constantFrom('upsert' as const, 'delete' as const),
        ts: fc.integer({ min: 0, max: 2 ** 45 }),
        data: fc.jsonValue(),
      })
      .map(({ seq, extra, key, op, ts, data }) => new StoredChange(seq, key, op, seq + extra, ts, op === 'upsert' ? JSON.stringify(data) : null))
    fc.assert(
      fc.property(arb, (c) => {
        const back = change(encodeChange(c))
        assert.deepEqual([back.seq, back.key, back.op, back.tx, back.ts, back.dataText], [c.seq, c.key, c.op, c.tx, c.ts, c.dataText])
      }),
      propertyParameters(300),
    )
  })

  it('falls back to a full parse for another shape, re-serializing data', () => {
    const c = change('{ "key": "a", "seq": 4, "ts": 5, "tx": 4, "op": "upsert", "data": { "b" : 2 } }')
    assert.deepEqual([c.seq, c.key, c.op, c.tx, c.ts, c.dataText], [4, 'a', 'upsert', 4, 5, '{"b":2}'])
    const d = change('{"seq":5,"key":"b","op":"delete","tx":5,"ts":5,"extra":"ignored"}')
    assert.equal(d.dataText, null)
  })

  it('tells end lines and error lines apart', () => {
    assert.deepEqual(decodeChangesLine('{"end":true,"epoch":"e","head":3,"last":3}'), { kind: 'end', end: { end: true, epoch: 'e', head: 3, last: 3 } })
    assert.equal(decodeChangesLine('{"error":"internal","message":"boom"}').kind, 'error')
  })

  it('refuses anything off, saying what', () => {
    const bad: Array<[string, RegExp]> = [
      ['not json', /not a JSON line/],
      ['[1,2]', /expected a JSON object/],
      ['{"seq":0,"key":"a","op":"delete","tx":0,"ts":1}', /seq 0/],
      ['{"seq":-1,"key":"a","op":"delete","tx":1,"ts":1}', /seq -1/],
      ['{"seq":1.5,"key":"a","op":"delete","tx":2,"ts":1}', /seq 1.5/],
      ['{"seq":5,"key":"a","op":"delete","tx":4,"ts":1}', /tx 4/],
      ['{"seq":5,"key":"","op":"delete","tx":5,"ts":1}', /empty key/],
      ['{"seq":5,"key":"\\ud800","op":"delete","tx":5,"ts":1}', /lone surrogate/],
      [`{"seq":5,"key":"${'k'.repeat(513)}","op":"delete","tx":5,"ts":1}`, /513 bytes/],
      ['{"seq":5,"key":"a","op":"merge","tx":5,"ts":1}', /op "merge"/],
      ['{"seq":5,"key":"a","op":"upsert","tx":5,"ts":1}', /upsert without data/],
      ['{"seq":5,"key":"a","op":"delete","data":1,"tx":5,"ts":1}', /delete with data/],
      ['{"seq":5,"key":7,"op":"delete","tx":5,"ts":1}', /needs numbers/],
      ['{"seq":5,"key":"a","op":"upsert","data":{"a":1,"tx":5,"ts":1}', /not one JSON value/],
      ['{"seq":5,"key":"a","op":"upsert","data":{"a":,"tx":5,"ts":1}', /not one JSON value/],
      ['{"seq":5,"key":"a","op":"upsert","data":tru,"tx":5,"ts":1}', /not one JSON value/],
      ['{"seq":5,"key":"a","op":"upsert","data":"open\\","tx":5,"ts":1}', /not one JSON value/],
      ['{"seq":99999999999999999,"key":"a","op":"delete","tx":99999999999999999,"ts":1}', /not a positive whole number/],
    ]
    for (const [line, message] of bad) {
      assert.throws(() => decodeChangesLine(line), (e) => e instanceof ProtocolError && message.test(e.message), line)
    }
  })
})

describe('wire lines: rows', () => {
  it('reads snapshot rows and tombstones in the exact shape, data byte for byte', () => {
    for (const text of ODD_DATA) {
      const line = encodeRow(new StoredRow('k\u2028', 12, text))
      const r = row(line)
      assert.deepEqual([r.key, r.seq, r.dataText], ['k\u2028', 12, text])
    }
    const t = row(encodeRow(new StoredRow('gone', 3, null)))
    assert.equal(t.deleted, true)
    assert.equal(row('{"seq":2,"key":"x","data":[1 ]}').dataText, '[1]', 'another shape is parsed whole')
    assert.throws(() => decodeSnapshotLine('{"key":"x","seq":2}'), /either data or "deleted"/)
    assert.throws(() => decodeSnapshotLine('{"key":"x","seq":0,"data":1}'), /seq 0/)
  })

  it('reads a rows document, data byte for byte, in either shape', () => {
    const rows = ODD_DATA.map((text, i) => new StoredRow(`k${i}`, i + 1, text))
    rows.push(new StoredRow('dead', 2, null))
    const body = `{"epoch":"e1","head":99,"rows":[${rows.map(encodeRow).join(',')}]}`
    const doc = decodeRowsDocument(body)
    assert.equal(doc.epoch, 'e1')
    assert.equal(doc.head, 99)
    assert.deepEqual(
      doc.rows.map((r) => [r.key, r.seq, r.dataText]),
      rows.map((r) => [r.key, r.seq, r.dataText]),
    )
    assert.deepEqual(decodeRowsDocument('{"epoch":"e","head":0,"rows":[]}'), { epoch: 'e', head: 0, rows: [] })
    const spaced = decodeRowsDocument('{ "rows": [ {"key":"a","seq":1,"data":{ "x" : 1 }} ], "head": 3, "epoch": "e" }')
    assert.equal(spaced.rows[0]?.dataText, '{"x":1}')
    assert.throws(() => decodeRowsDocument('{"epoch":"e","head":0,"rows":[{"key":"a","seq":1,"data":1}'), ProtocolError)
    assert.throws(() => decodeRowsDocument('{"epoch":"e","rows":[]}'), /needs epoch, head and rows/)
    assert.throws(() => decodeRowsDocument('{"epoch":"e","head":1,"rows":[7]}'), /not an object/)
  })
})

describe('line splitter', () => {
  const split = (chunks: Buffer[], max = 1 << 20): { lines: string[]; partial: number } => {
    const s = new LineSplitter(max)
    const lines: string[] = []
    for (const c of chunks) s.push(c, (l) => lines.push(l))
    return { lines, partial: s.partialBytes }
  }

  it('joins lines split anywhere across chunks, multi-byte characters included', () => {
    const text = '{"a":"é日本😀"}\n\n{"b":2}\n{"c":"x"}\n'
    const bytes = Buffer.from(text)
    for (let cut1 = 0; cut1 <= bytes.length; cut1++) {
      for (let cut2 = cut1; cut2 <= bytes.length; cut2 += 3) {
        const { lines, partial } = split([bytes.subarray(0, cut1), bytes.subarray(cut1, cut2), bytes.subarray(cut2)])
        assert.deepEqual(lines, ['{"a":"é日本😀"}', '{"b":2}', '{"c":"x"}'])
        assert.equal(partial, 0)
      }
    }
    assert.deepEqual(split([Buffer.from('{"a":1}\n{"b"')]), { lines: ['{"a":1}'], partial: 4 })
  })

  it('refuses a runaway line and bytes that are not UTF-8', () => {
    assert.throws(() => split([Buffer.alloc(600, 0x61), Buffer.alloc(600, 0x61)], 1000), /over 1000 bytes/)
    assert.throws(() => split([Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a])]), /not UTF-8/)
  })
})

describe('key order', () => {
  it('compares keys by UTF-8 bytes, like the stores', () => {
    const keys = ['a', 'b', 'ab', '', 'z\uffff', 'z😀', 'z\ue000', 'Z', 'é', '日']
    const byBytes = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    assert.deepEqual([...keys].sort(compareKeys), byBytes)
    assert.ok(compareKeys('\uffff', '😀') < 0, 'U+FFFF sorts before U+1F600 in UTF-8 (not in UTF-16)')
  })
})
