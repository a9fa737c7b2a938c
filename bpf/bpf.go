// Package bpf holds tcpshift's BPF programs and the Go bindings bpf2go
// generates from them. The map layouts are declared once, in tcpshift.h.
//
// Regenerate with `make generate` (needs clang and libbpf-dev).
package bpf

import (
	"crypto/sha256"
	"encoding/hex"
)

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type frontend_key -type frontend -type table -type subset_slots -type endpoint -type endpoint_stats -type service_stats -type service_meta -type subset_meta -type mode -type policy -type service_flags -type health -type affinity_key -type affinity -type original_dest -type conn -type conn_flags -type flow -type flow_bucket -type listen_ids -type table_flags -type conn_bytes -type owner -type owner_flags -type service_file -type service_file_flags -type object_key -type object -type shift -type shift_state -type rebalance_run -type endpoint_place -type filter_part Tcpshift tcpshift.c

// ObjectTag names the embedded BPF object: the first 12 hex digits of its
// sha256, so `tcpshift version` tells which programs a binary loads.
func ObjectTag() string {
	sum := sha256.Sum256(_TcpshiftBytes)
	return hex.EncodeToString(sum[:6])
}
