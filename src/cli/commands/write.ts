import { createInterface } from 'node:readline'
import { BadRequestError } from '../../errors.js'
import type { Json, WriteOp } from '../../protocol/types.js'
import type { Registrar } from '../cli.js'
import { examples } from '../options.js'

interface WriteOptions {
  delete?: boolean
  stdin?: boolean
}

/** `tidemark write <db> <feed> <key> [json]`: one put or delete, or a transaction of them from stdin. */
export const registerWrite: Registrar = (program, cli) => {
  program
    .command('write')
    .description('write changes to a feed through the source API (creates the database file and the feed when missing)')
    .usage('[options] <db> <feed> <key> [json]  |  <db> <feed> --stdin')
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<feed>', 'feed name')
    .argument('[key]', 'key to write')
    .argument('[json]', "the key's new data, as JSON")
    .option('--delete', 'delete the key instead of writing data')
    .option('--stdin', 'read NDJSON lines {"key":…,"data":…} or {"key":…,"delete":true} and write them in one transaction')
    .addHelpText(
      'after',
      `\nPrints the seq of each change written, one per line.\n${examples([
        "tidemark write shop.db customers 42 '{\"name\":\"Ada\",\"city\":\"Paris\"}'",
        'tidemark write shop.db customers 42 --delete',
        "printf '%s\\n' '{\"key\":\"1\",\"data\":{\"n\":1}}' '{\"key\":\"2\",\"delete\":true}' | tidemark write shop.db customers --stdin",
      ])}`,
    )
    .action(async (db: string, feed: string, key: string | undefined, json: string | undefined, options: WriteOptions) => {
      const ops = options.stdin ? await readOps(key, json, options) : [argumentOp(key, json, options)]
      const seqs = await cli.withStore(db, { create: true }, async (store) => {
        await store.ensureFeed(feed)
        return store.write(feed, ops)
      })
      for (const seq of seqs) await cli.out.line(String(seq))
      await cli.out.flush()
    })
}

function argumentOp(key: string | undefined, json: string | undefined, options: WriteOptions): WriteOp {
  if (key === undefined) throw new BadRequestError('give a key to write (or --stdin to read changes from stdin)')
  if (options.delete) {
    if (json !== undefined) throw new BadRequestError('--delete takes no data: leave out the JSON argument')
    return { op: 'delete', key }
  }
  if (json === undefined) throw new BadRequestError(`give the data of key "${key}" as a JSON argument, or --delete to delete it`)
  return { op: 'upsert', key, data: parseJson(json, `the data of key "${key}"`) as Json }
}

async function readOps(key: string | undefined, json: string | undefined, options: WriteOptions): Promise<WriteOp[]> {
  if (key !== undefined || json !== undefined || options.delete) {
    throw new BadRequestError('--stdin takes its keys and data from stdin: leave out the key, the JSON and --delete')
  }
  if (process.stdin.isTTY) process.stderr.write('tidemark: reading NDJSON changes from stdin (end with Ctrl-D)\n')
  const ops: WriteOp[] = []
  let n = 0
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    n++
    if (line.trim() === '') continue
    ops.push(lineOp(parseJson(line, `stdin line ${n}`), n))
  }
  if (ops.length === 0) throw new BadRequestError('no changes on stdin: nothing written')
  return ops
}

function lineOp(value: unknown, n: number): WriteOp {
  const where = `stdin line ${n}`
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequestError(`${where}: expected an object {"key":…,"data":…} or {"key":…,"delete":true}`)
  }
  const { key, data, delete: del, ...rest } = value as Record<string, unknown>
  const extra = Object.keys(rest)
  if (extra.length > 0) throw new BadRequestError(`${where}: unexpected field ${JSON.stringify(extra[0])} (only key, data and delete)`)
  if (typeof key !== 'string') throw new BadRequestError(`${where}: "key" must be a string`)
  if (del === true) {
    if (data !== undefined) throw new BadRequestError(`${where}: a delete has no "data"`)
    return { op: 'delete', key }
  }
  if (del !== undefined) throw new BadRequestError(`${where}: "delete" must be true when present`)
  if (data === undefined) throw new BadRequestError(`${where}: give "data" for key "${key}", or "delete": true`)
  // The store validates the data itself (JSON-able, size, depth).
  return { op: 'upsert', key, data: data as Json }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch (error) {
    const hint = /^[A-Za-z]/.test(text.trim()) && !/^(true|false|null)\b/.test(text.trim()) ? ' (a string must be quoted: \'"text"\')' : ''
    throw new BadRequestError(`${what} is not valid JSON: ${(error as Error).message}${hint}`)
  }
}
