package loader

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	tsmaps "github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/state"
)

// A first apply records the namespace's owner (its cookie and inode) in
// the same transaction as its services.
func TestWriteRecordsTheOwner(t *testing.T) {
	f := newFake(t)
	log, err := f.traced(ApplyOptions{}, connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	if err != nil {
		t.Fatal(err)
	}
	// The sequence turns odd, then the owner record is written.
	if got := log.ops["records"]; !slices.Equal(got, []string{"put owners", "put owners"}) {
		t.Fatalf("records wrote %v, want the sequence and the owner", got)
	}
	o, err := f.set.Owner()
	if err != nil {
		t.Fatal(err)
	}
	if o.NetnsCookie != 0x5eed || o.NetnsIno != 4026531840 || o.WriteSeq != 2 {
		t.Fatalf("owner %+v, want cookie 0x5eed, inode 4026531840, sequence 2", o)
	}
}

// The daemon's record (its pid, start time and file) is written with the
// change it applies.
func TestWriteRecordsTheDaemon(t *testing.T) {
	f := newFake(t)
	d, err := f.delta([]svc{connect("a", "192.0.2.1:80", "10.0.0.1:80")}, ApplyOptions{Daemon: true})
	if err != nil {
		t.Fatal(err)
	}
	d.daemonFile = "/etc/tcpshift/routes.yaml"
	if err := f.tg.execute(f.set, d, ApplyOptions{Daemon: true}); err != nil {
		t.Fatal(err)
	}
	o, err := f.set.Owner()
	if err != nil {
		t.Fatal(err)
	}
	dm := runningDaemon(&o)
	if dm == nil || dm.Pid != os.Getpid() || dm.File != "/etc/tcpshift/routes.yaml" {
		t.Fatalf("daemon recorded %+v, want this process following routes.yaml", dm)
	}
	// Another process's record refuses the claim, and nothing is written.
	o.DaemonPid = 1
	o.DaemonStart, err = processStart(1)
	if err != nil {
		t.Fatalf("start time of pid 1: %v", err)
	}
	if err := f.mem.Put("owners", uint32(0), &o); err != nil {
		t.Fatal(err)
	}
	g := f.clone()
	d, err = g.delta([]svc{connect("a", "192.0.2.1:80", "10.0.0.2:80")}, ApplyOptions{Daemon: true})
	if err != nil {
		t.Fatal(err)
	}
	d.daemonFile = "/etc/tcpshift/routes.yaml"
	if err := g.tg.execute(g.set, d, ApplyOptions{Daemon: true}); !errors.Is(err, ErrDaemon) {
		t.Fatalf("claim over pid 1's record: %v, want ErrDaemon", err)
	}
	// Refused before its first write: not even the sequence moved.
	if d := diffLines(f.dump(), g.dump()); len(d) > 0 || g.seq() != f.seq() || g.mem.Writes() != 0 {
		t.Fatalf("a refused claim wrote %d times: %v", g.mem.Writes(), d)
	}
}

// transact commits what fn wrote, or rolls it back when fn fails; a
// rollback that fails too is said with fn's error.
func TestTransact(t *testing.T) {
	f := newFake(t)
	f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"))
	svcs, err := f.set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	reweigh := func(w uint64, fail error) func(set *tsmaps.Set) error {
		return func(set *tsmaps.Set) error {
			s := *svcs[0]
			s.Subsets = slices.Clone(s.Subsets)
			s.Subsets[0].Weight = w
			if err := set.SwapTable(&s); err != nil {
				return err
			}
			if err := set.PutMeta(&s); err != nil {
				return err
			}
			return fail
		}
	}
	before := f.clone()
	boom := errors.New("boom")
	if err := transact(f.set, reweigh(7, boom)); !errors.Is(err, boom) {
		t.Fatalf("transact: %v, want fn's error", err)
	}
	requireAsBefore(t, before, f, "after fn failed")
	// A failing rollback step is said with fn's error.
	if err := transact(f.set, func(set *tsmaps.Set) error {
		if err := reweigh(9, nil)(set); err != nil {
			return err
		}
		f.mem.Fault = func(op state.Op) error {
			if op.Map == "services" {
				return errors.New("restore refused")
			}
			return nil
		}
		return boom
	}); !errors.Is(err, boom) || !strings.Contains(err.Error(), "(and roll back: ") || !strings.Contains(err.Error(), "restore refused") {
		t.Fatalf("transact with a failing rollback: %v", err)
	}
	f.mem.Fault = nil
	if err := transact(f.set, reweigh(3, nil)); err != nil {
		t.Fatal(err)
	}
	after, err := f.set.ServiceList()
	if err != nil || after[0].Subsets[0].Weight != 3 {
		t.Fatalf("after a committed transaction: %+v %v, want weight 3", after, err)
	}
}
