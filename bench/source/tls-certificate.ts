/**
 * A throwaway certificate authority and a server certificate it signed (for 127.0.0.1 and
 * localhost), made with the openssl command line: what the TLS figures serve with and the tests
 * trust. P-256 keys, quick to make. Throws when openssl is missing.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface TestCertificate {
  /** The CA's certificate file, PEM (what a client trusts), and its bytes. */
  caFile: string
  ca: Buffer
  certFile: string
  keyFile: string
  cert: Buffer
  key: Buffer
}

export function makeTestCertificate(dir: string, caName = 'tidemark test CA'): TestCertificate {
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${caName}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'])
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf'])
  const file = (f: string): string => join(dir, f)
  return {
    caFile: file('ca.pem'),
    ca: readFileSync(file('ca.pem')),
    certFile: file('server.pem'),
    keyFile: file('server.key'),
    cert: readFileSync(file('server.pem')),
    key: readFileSync(file('server.key')),
  }
}
