package testenv

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
)

func parseConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("routes.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestKernelStateFollowsLoader(t *testing.T) {
	env := New(t)
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")

	first := env.KernelState()
	if d := first.Diff(env.KernelState()); d != "" {
		t.Fatalf("two snapshots of an empty world differ:\n%s", d)
	}
	for _, l := range first.Lines() {
		if strings.HasPrefix(l, "fs tcpshift") || strings.HasPrefix(l, "map ") || strings.HasPrefix(l, "link ") {
			t.Fatalf("empty bpffs, yet the snapshot has %q", l)
		}
	}
	for _, want := range []string{"addr dev 1 127.0.0.1/8 ", "addr dev 1 ::1/128 ", "route table 255 ipv4 type 2 127.0.0.0/8 ", "route table 255 ipv6 type 2 ::1/128 ", "attached cgroup CGroupSockOps = none"} {
		if !strings.Contains(first.String(), want) {
			t.Errorf("snapshot of an empty world has no %q:\n%s", want, first)
		}
	}

	tg := env.Target()
	// A first apply that fails (nothing listens on 127.0.0.1:9003) leaves
	// the world as it was: not even the pin directory.
	broken := strings.Replace(EchoConfig, "127.0.0.1:9002", "127.0.0.1:9003", 1)
	if _, err := tg.Apply(loader.Fixed(parseConfig(t, broken)), loader.ApplyOptions{}); err == nil {
		t.Fatal("apply with an endpoint nobody listens on succeeded")
	}
	env.RequireUnchanged(first)

	if _, err := tg.Apply(loader.Fixed(parseConfig(t, EchoConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Down() })
	applied := env.KernelState()
	d := first.Diff(applied)
	if d == "" {
		t.Fatal("apply changed nothing in the snapshot")
	}
	if !strings.Contains(d, "/frontends:") {
		t.Fatalf("diff after apply does not name the frontends map:\n%s", d)
	}
	t.Logf("apply:\n%s", d)
	if d := applied.Diff(env.KernelState()); d != "" {
		t.Fatalf("two snapshots after apply differ:\n%s", d)
	}
	for _, want := range []string{"/sockets[", "/tables[00000000]/inner[", "link tcpshift/net-", "attached netns SkLookup = "} {
		if !strings.Contains(applied.String(), want) {
			t.Errorf("snapshot after apply has no %q", want)
		}
	}

	if _, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: 50}, {Subset: "v2", Weight: 50}}); err != nil {
		t.Fatal(err)
	}
	d = applied.Diff(env.KernelState())
	if !strings.Contains(d, "/tables[") {
		t.Fatalf("diff after set weights does not name the tables map:\n%s", d)
	}
	t.Logf("set weights:\n%s", d)

	if _, err := tg.Down(); err != nil {
		t.Fatal(err)
	}
	env.RequireUnchanged(first)
}

// TestKernelStateMapKinds checks the map kinds tcpshift does not pin today
// but a snapshot must still read: per-CPU values and hash-of-maps.
func TestKernelStateMapKinds(t *testing.T) {
	env := New(t)
	percpu, err := ebpf.NewMap(&ebpf.MapSpec{Name: "percpu", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer percpu.Close()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]uint32, n)
	var cpus []string
	for i := range vals {
		vals[i] = uint32(i + 1)
		cpus = append(cpus, fmt.Sprintf("%02x000000", i+1))
	}
	if err := percpu.Put(uint32(1), vals); err != nil {
		t.Fatal(err)
	}
	if err := percpu.Pin(filepath.Join(env.BPFFS, "percpu")); err != nil {
		t.Fatal(err)
	}
	inner := &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Name: "outer", Type: ebpf.HashOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 4, InnerMap: inner})
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	in, err := ebpf.NewMap(inner)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.Put(uint32(7), uint32(0xabcd)); err != nil {
		t.Fatal(err)
	}
	if err := outer.Put(uint32(3), in); err != nil {
		t.Fatal(err)
	}
	if err := outer.Pin(filepath.Join(env.BPFFS, "outer")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { percpu.Unpin(); outer.Unpin() })

	s := env.KernelState().String()
	for _, want := range []string{
		"map percpu[01000000] = percpu " + strings.Join(cpus, "|") + "\n",
		"map percpu[00000000] = percpu 00000000|",
		"map outer[03000000] = inner map id ",
		"map outer[03000000]/inner[07000000] = cdab0000",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("snapshot has no %q:\n%s", want, s)
		}
	}

	before := env.KernelState()
	if err := in.Put(uint32(7), uint32(1)); err != nil {
		t.Fatal(err)
	}
	if d := before.Diff(env.KernelState()); !strings.Contains(d, "- map outer[03000000]/inner[07000000] = cdab0000\n+ map outer[03000000]/inner[07000000] = 01000000") {
		t.Fatalf("inner map change not shown as expected:\n%s", d)
	}
}

func TestDiffIsBounded(t *testing.T) {
	var a, b KernelState
	for i := range 100 {
		a.lines = append(a.lines, fmt.Sprintf("map m[%08x] = %s", i, strings.Repeat("00", 300)))
		b.lines = append(b.lines, fmt.Sprintf("map m[%08x] = %s11", i, strings.Repeat("00", 299)))
	}
	if a.Diff(&a) != "" {
		t.Fatal("a snapshot differs from itself")
	}
	d := a.Diff(&b)
	lines := strings.Split(d, "\n")
	if len(lines) > diffLimit+diffGroups+3 {
		t.Fatalf("diff has %d lines", len(lines))
	}
	if lines[1] != "  map m: 200 line(s)" {
		t.Fatalf("diff does not sum up the objects first:\n%s", d)
	}
	if !strings.HasPrefix(lines[2], "- map m[00000000] = …[char ") || !strings.HasPrefix(lines[3], "+ map m[00000000] = …[char ") || !strings.HasSuffix(lines[3], "11") {
		t.Fatalf("changed value not cut around its difference:\n%s", d)
	}
	if !strings.Contains(lines[len(lines)-1], "and 160 more") {
		t.Fatalf("diff does not say how much it left out:\n%s", d)
	}
	for _, l := range lines {
		if len(l) > diffWidth+60 {
			t.Fatalf("diff line of %d characters", len(l))
		}
	}
}

// TestKernelStateSettles checks that a snapshot waits for what the kernel
// finishes by itself: the local route of a new veth's link-local address
// comes only once duplicate address detection is over.
func TestKernelStateSettles(t *testing.T) {
	env := New(t)
	env.Remote()
	before := env.KernelState()
	time.Sleep(2 * time.Second)
	env.RequireUnchanged(before)
}
