// Package bpfmem reads what the kernel reports for tcpshift's pinned state:
// the memory its maps are charged and its programs' run time, for the
// benchmarks.
package bpfmem

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpshift/tcpshift/bpf"
)

// MapMemory adds up the memlock the kernel reports (fdinfo) for every map
// pinned in dir and every table (inner map) in force.
func MapMemory(dir string) (total uint64, byMap map[string]uint64, err error) {
	byMap = map[string]uint64{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "_link") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue // not a map
		}
		n, err := memlock(m)
		if err == nil && e.Name() == bpf.TcpshiftMapTables {
			var inner uint64
			inner, err = innerMemory(m)
			n += inner
		}
		m.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		byMap[e.Name()] = n
		total += n
	}
	return total, byMap, nil
}

func innerMemory(outer *ebpf.Map) (uint64, error) {
	var (
		key   uint32
		id    ebpf.MapID
		total uint64
	)
	it := outer.Iterate()
	for it.Next(&key, &id) {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return 0, err
		}
		n, err := memlock(m)
		m.Close()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, it.Err()
}

// memlock reads the memlock line of a map's fdinfo: what the kernel
// charges for it.
func memlock(m *ebpf.Map) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no memlock in fdinfo")
}

// ProgStats reads the run time and run count (BPF stats must be on) of the
// program a pinned link runs, and its id.
func ProgStats(pin string) (id ebpf.ProgramID, runtime time.Duration, runs uint64, err error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, 0, 0, err
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return 0, 0, 0, err
	}
	defer prog.Close()
	st, err := prog.Stats()
	if err != nil {
		return 0, 0, 0, err
	}
	return info.Program, st.Runtime, st.RunCount, nil
}
