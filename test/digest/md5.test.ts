import assert from 'node:assert/strict'
import { hash } from 'node:crypto'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { MD5_PADDING, md5Into } from '../../src/digest/md5.js'
import { bucketOf, rowHashHex, RowHasher } from '../../src/digest/row-hash.js'

function md5Hex(bytes: Uint8Array): string {
  const m = new Uint8Array(bytes.length + MD5_PADDING)
  m.set(bytes)
  const out = new Uint8Array(20).fill(7)
  md5Into(m, bytes.length, out, 2)
  assert.deepEqual([out[0], out[1], out[18], out[19]], [7, 7, 7, 7], 'writes its 16 bytes only')
  assert.deepEqual(m.subarray(0, bytes.length), bytes, 'leaves the message as it was')
  return Buffer.from(out.subarray(2, 18)).toString('hex')
}

describe('md5Into', () => {
  it('equals node:crypto on every length around the block and padding boundaries', () => {
    for (let n = 0; n <= 200; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 131 + n) & 255)
      assert.equal(md5Hex(bytes), hash('md5', bytes, 'hex'), `length ${n}`)
    }
    assert.equal(md5Hex(new Uint8Array(100_000).fill(0xa5)), hash('md5', new Uint8Array(100_000).fill(0xa5), 'hex'))
  })

  it('equals node:crypto on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => md5Hex(bytes) === hash('md5', bytes, 'hex')))
  })
})

describe('RowHasher', () => {
  it('gives the row hash and bucket of rowHashHex and bucketOf, from the UTF-8 bytes of key and data anywhere in a buffer', () => {
    const hasher = new RowHasher()
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
        fc.oneof(fc.constantFrom(0, 1, 9, 10, Number.MAX_SAFE_INTEGER), fc.nat()),
        fc.oneof(fc.string({ unit: 'grapheme', maxLength: 80 }), fc.string({ maxLength: 2000 })),
        fc.nat(30),
        (key, seq, data, gap) => {
          const buf = Buffer.alloc(gap + 3 * (key.length + data.length) + 40, 0xee)
          const keyAt = gap
          const keyLength = buf.write(key, keyAt)
          const dataAt = keyAt + keyLength + 5
          const dataLength = buf.write(data, dataAt)
          const out = Buffer.alloc(16)
          hasher.hashInto(buf, keyAt, keyLength, seq, dataAt, dataLength, out, 0)
          assert.equal(out.toString('hex'), rowHashHex(key, seq, data))
          assert.equal(hasher.bucket(buf, keyAt, keyLength), bucketOf(key))
        },
      ),
    )
  })
})
