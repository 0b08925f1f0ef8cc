import { makeTestCertificate, type TestCertificate } from '../../bench/source/tls-certificate.js'
import { tmpDir } from './tmp.js'

/** A throwaway CA and a server certificate it signed, in a temp folder of the test's own (openssl). */
export function testCa(name = 'tidemark test CA'): TestCertificate {
  return makeTestCertificate(tmpDir(), name)
}
