// Package features knows every kernel facility tcpshift uses: it probes each
// once per process and tells, for each, what it enables and what its absence
// degrades. Commands ask it before they take a path that needs an optional
// facility, so a host that refuses one (an old kernel, lockdown, a BPF LSM
// policy, a missing capability) loses that path, never the command.
package features

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

// Name names a facility: in `tcpshift doctor`, in the tcpshift_kernel_feature
// metric and in DisableEnv.
type Name string

// The facilities, in the order doctor lists them.
const (
	BTF           Name = "btf"
	BPFFS         Name = "bpffs"
	Cgroup2       Name = "cgroup2"
	SkLookup      Name = "sk_lookup"
	Connect       Name = "cgroup_connect"
	Getpeername   Name = "cgroup_getpeername"
	Sockops       Name = "sockops"
	SockmapUpdate Name = "sockops_sockmap_update"
	SkStorage     Name = "sk_storage"
	IterTCP       Name = "iter_tcp_sock_destroy"
	IterSkStorage Name = "iter_sk_storage"
	DiagDestroy   Name = "sock_diag_destroy"
	DiagStorage   Name = "sock_diag_sk_storage"
)

// DisableEnv turns facilities off for this process, as if the kernel refused
// them: a comma-separated list of names. Tests use it to run every fallback
// path on any host; an operator can use it to keep tcpshift off a facility.
const DisableEnv = "TCPSHIFT_DISABLE_FEATURES"

// ErrDisabled is returned for a facility DisableEnv turns off.
var ErrDisabled = errors.New("turned off by " + DisableEnv)

// Facility is one kernel facility and what depends on it.
type Facility struct {
	Name Name
	// What it is, in the kernel's words.
	What string
	// Enables says what tcpshift does with it.
	Enables string
	// Without says what happens on a host without it.
	Without string
	// Core facilities are needed by apply in every mode (lookup, connect
	// and proxy all use the same loaded programs and maps).
	Core  bool
	probe func() error
}

// All lists every facility tcpshift uses.
var All = []Facility{
	{BTF, "kernel BTF (/sys/kernel/btf/vmlinux)", "CO-RE reads of kernel structures (payload bytes, SYN-cookie checks)",
		"the programs cannot be loaded: tcpshift cannot run", true, probeBTF},
	{BPFFS, "the bpf filesystem", "state pinned per network namespace, so every command works from it alone",
		"no state can be kept: tcpshift cannot run", true, probeFilesystem("bpf")},
	{Cgroup2, "cgroup v2", "the connect, getpeername and sockops hooks attach to a cgroup",
		"no connect mode and no accounting: tcpshift cannot run", true, probeFilesystem("cgroup2")},
	{SkLookup, "sk_lookup program (atomics, socket map lookups, bpf_sk_assign)", "lookup mode: connections for a frontend handed to a local listener",
		"tcpshift cannot run (apply loads every hook)", true, probeProgram("tcpshift_lookup")},
	{Connect, "cgroup/connect4 and connect6 programs", "connect mode: a local client's connect() rewritten to the chosen backend",
		"tcpshift cannot run (apply loads every hook)", true, probePrograms("tcpshift_connect4", "tcpshift_connect6")},
	{Getpeername, "cgroup/getpeername4 and getpeername6 programs", "connect mode: the application sees the frontend it dialled",
		"tcpshift cannot run (apply loads every hook)", true, probePrograms("tcpshift_getpeername4", "tcpshift_getpeername6")},
	{Sockops, "sockops program", "per-endpoint connection and byte accounting; listeners registered as they start listening",
		"tcpshift cannot run (apply loads every hook)", true, probeProgram("tcpshift_sockops")},
	{SockmapUpdate, "bpf_sock_map_update from sockops", "a restarted backend is registered by the kernel at listen()",
		"tcpshift cannot run (the sockops program calls it)", true, probeSockmapUpdate},
	{SkStorage, "socket storage maps (BPF_MAP_TYPE_SK_STORAGE)", "each connection's endpoint tag: accounting, getpeername, rebalance",
		"tcpshift cannot run", true, probeSkStorage},
	{IterTCP, "iter/tcp program with bpf_sock_destroy (Linux 6.5)", "rebalance closes connections from a BPF iterator",
		"rebalance closes them with sock_diag destroy instead", false, probeProgram("tcpshift_rebalance")},
	{IterSkStorage, "iter/bpf_sk_storage_map program", "status reads live bytes of open connections from a BPF iterator",
		"status reads them through sock_diag instead", false, probeProgram("tcpshift_bytes")},
	{DiagDestroy, "sock_diag SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY)", "rebalance where the BPF iterator is unavailable",
		"rebalance needs iter_tcp_sock_destroy; without both it fails and connections drain by themselves (wait-drained)", false, probeDiagDestroy},
	{DiagStorage, "sock_diag dumps with BPF socket storage (INET_DIAG_REQ_SK_BPF_STORAGES, Linux 5.2)", "status's live bytes and rebalance's choice of connections where iterators are unavailable",
		"without iter_sk_storage too, status shows bytes of closed connections only and says so; without iter_tcp_sock_destroy too, rebalance fails", false, probeDiagStorage},
}

// Lookup returns the facility named n.
func Lookup(n Name) (Facility, bool) {
	i := slices.IndexFunc(All, func(f Facility) bool { return f.Name == n })
	if i < 0 {
		return Facility{}, false
	}
	return All[i], true
}

var (
	mu     sync.Mutex
	probed = map[Name]error{}
)

// Check reports whether the kernel offers facility n: nil when it does,
// otherwise why not (the kernel's error, or ErrDisabled). The probe runs once
// per process; DisableEnv is read every time.
func Check(n Name) error {
	if disabled(n) {
		return fmt.Errorf("%s: %w", n, ErrDisabled)
	}
	f, ok := Lookup(n)
	if !ok {
		return fmt.Errorf("unknown kernel facility %q", n)
	}
	mu.Lock()
	defer mu.Unlock()
	err, done := probed[n]
	if !done {
		err = f.probe()
		if err != nil {
			err = fmt.Errorf("%s: %w", n, err)
		}
		probed[n] = err
	}
	return err
}

func disabled(n Name) bool {
	for _, s := range strings.Split(os.Getenv(DisableEnv), ",") {
		if Name(strings.TrimSpace(s)) == n {
			return true
		}
	}
	return false
}

// Result is one facility as this host has it.
type Result struct {
	Facility
	Err error
}

// Available reports whether the host has the facility.
func (r Result) Available() bool { return r.Err == nil }

// Report is every facility as this host has it.
type Report []Result

// Probe checks every facility.
func Probe() Report {
	out := make(Report, 0, len(All))
	for _, f := range All {
		out = append(out, Result{f, Check(f.Name)})
	}
	return out
}

// Missing lists the core facilities the host lacks: any of them stops
// lookup, connect and proxy mode alike.
func (r Report) Missing() []Name {
	var out []Name
	for _, x := range r {
		if x.Core && x.Err != nil {
			out = append(out, x.Name)
		}
	}
	return out
}
