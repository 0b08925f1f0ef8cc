/** Locations of PostgreSQL stores; no `pg` here, so that telling a URL from a file path loads nothing. */

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location)
}

/** The URL as it may be shown: the password (and any password in the query string) removed. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = ''
    for (const name of [...u.searchParams.keys()]) if (/pass/i.test(name)) u.searchParams.set(name, '***')
    return u.toString()
  } catch {
    return 'postgres://(unparseable URL)'
  }
}
