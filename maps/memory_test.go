package maps

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/state"
)

// memSvc is a connect-mode service with one subset of n endpoints from id.
func memSvc(id uint32, name string, port uint16, first uint32, n int) *Service {
	svc := &Service{ID: id, Name: name, Frontend: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), Mode: ModeConnect}
	sub := Subset{Name: "v1", Weight: 1, FileWeight: 1}
	for i := range n {
		sub.Endpoints = append(sub.Endpoints, Endpoint{ID: first + uint32(i), Addr: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(9000+i))})
	}
	svc.Subsets = []Subset{sub}
	return svc
}

func newMemory(t *testing.T) (*Set, *state.Memory) {
	t.Helper()
	s, mem, err := NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	return s, mem
}

// Services written over memory read back as written, through the same
// code that reads the kernel's maps.
func TestMemoryServicesReadBack(t *testing.T) {
	s, _ := newMemory(t)
	want := []*Service{memSvc(0, "a", 80, 0, 3), memSvc(1, "b", 81, 3, 2)}
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteServices(want); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := s.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
	o, err := s.Owner()
	if err != nil || o.WriteSeq != 2 {
		t.Fatalf("write sequence %d (%v), want 2 after one committed write", o.WriteSeq, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// A rollback after tables were swapped puts every entry back, and the very
// same tables; the journal holds no table after.
func TestMemoryRollbackRestoresEverything(t *testing.T) {
	s, mem := newMemory(t)
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteServices([]*Service{memSvc(0, "a", 80, 0, 3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	before := mem.Dump()
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteServices([]*Service{memSvc(0, "a", 80, 3, 4), memSvc(1, "b", 81, 7, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteServices([]*Service{memSvc(0, "a", 80, 3, 4)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(); err != nil {
		t.Fatal(err)
	}
	after := mem.Dump()
	// Only the write sequence and the tables' version counters moved on.
	diff := slices.DeleteFunc(state.DiffDumps(before, after), func(l string) bool {
		return strings.HasPrefix(l[1:], "owners[") || strings.HasPrefix(l[1:], "table_versions[")
	})
	if len(diff) != 0 || mem.OpenInners() != 0 {
		t.Fatalf("after the rollback %d lines differ (%v), %d tables held; want the owner record only, none held", len(diff), diff, mem.OpenInners())
	}
	if o, _ := s.Owner(); o.WriteSeq != 4 {
		t.Fatalf("write sequence %d, want 4", o.WriteSeq)
	}
}

// A map the state lacks (pinned by an older build) is missing for the Set
// over memory as over the kernel.
func TestMemoryMissingKeyIsNotExist(t *testing.T) {
	s, _ := newMemory(t)
	if _, err := s.TableVersion(7); !errors.Is(err, state.ErrNotExist) {
		t.Fatalf("table of a service never written: %v, want ErrNotExist", err)
	}
	if _, ok, err := s.Shift(7); ok || err != nil {
		t.Fatalf("shift of a service never written: %v %v, want none", ok, err)
	}
}
