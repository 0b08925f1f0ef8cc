// The tests start clusters the way the bench does (src/bench/postgres/cluster.ts).
export { startCluster, postgresBinaries, freePort, type Cluster } from '../../src/bench/postgres/cluster.js'
