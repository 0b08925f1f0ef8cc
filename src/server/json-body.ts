import { BadRequestError } from '../errors.js'

/**
 * Parses a request body as JSON for the feed server, saying what is wrong when it is refused.
 * Keys that can poison prototypes (`__proto__`, and `constructor` holding a `prototype`) are
 * refused by name: JSON.parse makes them harmless own properties, but code that later merges the
 * object (spread, Object.assign, a validator's defaults) could turn them into a prototype change,
 * and a client of this protocol never needs them. Only a body that could hold one — it spells one
 * of the names, or has a `\u` escape that could spell it — pays for the reviver.
 */
export function parseJsonBody(text: string): unknown {
  if (text.length === 0) throw new BadRequestError('the body is empty: send a JSON document with content-type application/json')
  const suspect = text.includes('__proto__') || text.includes('constructor') || text.includes('\\u')
  try {
    return suspect ? JSON.parse(text, refusePoison) : JSON.parse(text)
  } catch (error) {
    if (error instanceof BadRequestError) throw error
    throw new BadRequestError(`the body is not valid JSON: ${(error as Error).message}`, { cause: error })
  }
}

function refusePoison(this: unknown, key: string, value: unknown): unknown {
  if (key === '__proto__') {
    throw new BadRequestError('the body has a "__proto__" key, which is refused: such a key can change the prototype of objects built from the body (prototype poisoning); no tidemark request has one')
  }
  if (key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype')) {
    throw new BadRequestError('the body has a "constructor" key holding a "prototype", which is refused: it can change the prototype of objects built from the body (prototype poisoning)')
  }
  return value
}
