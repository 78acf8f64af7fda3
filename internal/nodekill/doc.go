// Package nodekill holds no code: its test (make test-nodes) runs Vigie as a
// cluster on loopback, as processes (one PostgreSQL, Trillian's log server
// and signer built from the pinned module by scripts/trillian-bin.sh, three
// `vigie serve` nodes), kills nodes with SIGKILL under load, and checks
// that every acknowledged decision is in the log exactly once, that every
// signed checkpoint is consistent with every earlier one, and that
// `vigie audit` and `vigie verify` pass afterwards (docs/operations.md,
// "A cluster's processes").
//
// The test runs when VIGIE_TEST_NODES=1 (scripts/test-nodes.sh sets it),
// not in every `go test ./...`: it takes a minute or two of both cores.
//
// TestHA, the failover test (make test-ha, VIGIE_TEST_HA=1), runs on the
// same harness a highly available cluster: etcd, three PostgreSQL under
// Patroni with synchronous replication, two Trillian log servers and two
// signers elected through etcd, three nodes; it kills a node holding a
// lease, a log server, the master signer and the PostgreSQL primary, then
// makes the same checks (docs/operations.md, "High availability").
package nodekill
