import BetterSqlite3, { type Database } from 'better-sqlite3'
import { accessSync, constants, existsSync } from 'node:fs'
import { NotAStoreError, StoreUnavailableError } from '../../errors.js'

export interface OpenOptions {
  /** Create the file when it does not exist (default true). */
  create?: boolean
  readonly?: boolean
}

/**
 * Opens a SQLite file for tidemark: WAL (so that readers never wait for the owner's writer, and a
 * second connection can see what is committed), a busy timeout, and errors that say what to do.
 */
export function openDatabase(path: string, options: OpenOptions = {}): Database {
  const { create = true, readonly = false } = options
  if (!create && !existsSync(path)) {
    throw new StoreUnavailableError(`no such database file: ${path}`)
  }
  let db: Database
  try {
    db = new BetterSqlite3(path, { readonly, fileMustExist: !create })
  } catch (error) {
    throw new StoreUnavailableError(`cannot open ${path}: ${(error as Error).message}`, error)
  }
  try {
    db.pragma('busy_timeout = 10000')
    if (!readonly) {
      if (existsSync(path)) {
        try {
          accessSync(path, constants.W_OK)
        } catch (error) {
          throw new StoreUnavailableError(
            `${path} is read-only: tidemark needs to write its tables there (check the file's permissions)`,
            error,
          )
        }
      }
      const mode = db.pragma('journal_mode = WAL', { simple: true })
      if (mode !== 'wal' && path !== ':memory:' && path !== '') {
        throw new StoreUnavailableError(`${path}: cannot switch to WAL journal mode (got ${String(mode)})`)
      }
    } else {
      db.prepare('SELECT count(*) FROM sqlite_schema').get()
    }
  } catch (error) {
    db.close()
    throw translateError(error, path)
  }
  return db
}

/** Maps SQLite's error codes onto tidemark's, keeping the original as the cause. */
export function translateError(error: unknown, path: string): Error {
  const code = (error as { code?: string }).code ?? ''
  if (code === 'SQLITE_NOTADB') return new NotAStoreError(`${path} is not a SQLite database`, error)
  if (code === 'SQLITE_CORRUPT') return new NotAStoreError(`${path} is corrupt (SQLite says: ${(error as Error).message})`, error)
  if (code === 'SQLITE_READONLY_DIRECTORY') {
    return new StoreUnavailableError(
      `cannot read ${path}: it is in WAL mode and its folder is read-only, so SQLite cannot make the ${path}-shm file readers share (let this user write to the folder)`,
      error,
    )
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_PERM') {
    return new StoreUnavailableError(`cannot write ${path}: ${(error as Error).message}`, error)
  }
  return error as Error
}
