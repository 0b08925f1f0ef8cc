// The tests start clusters the way the bench does (bench/postgres/cluster.ts).
export { startCluster, postgresBinaries, freePort, type Cluster } from '../../bench/postgres/cluster.js'
