/**
 * A replica-like reader in its own process, for the changes-read benchmark: argv = base URL, feed,
 * head, limit. Reads the feed from 0 to the head over HTTP and prints `{ changes, rate }` as JSON.
 */
import { ChangesClient } from './changes-client.js'
import { readOverHttp } from './changes-read.js'

const [url, feed, head, limit] = process.argv.slice(2) as [string, string, string, string]
const client = new ChangesClient(url)
try {
  const result = await readOverHttp(client, feed, Number(head), Number(limit))
  process.stdout.write(`${JSON.stringify(result)}\n`)
} finally {
  await client.close()
}
