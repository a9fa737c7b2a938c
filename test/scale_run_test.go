package test

import (
	"context"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/loader"
)

// daemonApply applies a whole route config as tcpshift run does: through
// inputs.Change.Build (over the change it applied before) and Target.Apply,
// as the daemon, keeping overrides. It returns the change applied.
func daemonApply(t *testing.T, tg *loader.Target, text string, prev *inputs.Change) *inputs.Change {
	t.Helper()
	ch := &inputs.Change{Native: parse(t, text), Exact: true, Previous: prev}
	if _, err := tg.Apply(ch, loader.ApplyOptions{Daemon: true, DaemonFile: "scale.yaml", KeepOverrides: true}); err != nil {
		t.Fatal(err)
	}
	return ch
}

// tcpshift run with ten thousand services in its file applies one changed
// service: only it is updated, the others stay, and the apply (from the
// parsed file to the tables in force) is timed.
func TestDaemonOneChangeAmongTenThousand(t *testing.T) {
	const services, changes = 10000, 10
	env := scaleEnv(t)
	tg := env.Target()
	start := time.Now()
	prev := daemonApply(t, tg, scaleConfig(services, 0), nil)
	t.Logf("first apply of %d services as the daemon: %v", services, time.Since(start).Round(time.Millisecond))
	var took, cpu []time.Duration
	for k := 1; k <= changes; k++ {
		text := scaleConfigGen(services, func(i int) int {
			if i == 4321 {
				return k
			}
			return 0
		})
		cfg := parse(t, text)
		ch := &inputs.Change{Native: cfg, Exact: true, Previous: prev}
		start, cpu0 := time.Now(), cpuTime(t)
		var res []loader.Change
		var err error
		// Labelled, so a CPU profile of the test can focus on the changes.
		pprof.Do(context.Background(), pprof.Labels("apply", "one change"), func(context.Context) {
			res, err = tg.Apply(ch, loader.ApplyOptions{Daemon: true, DaemonFile: "scale.yaml", KeepOverrides: true})
		})
		took, cpu = append(took, time.Since(start)), append(cpu, cpuTime(t)-cpu0)
		if err != nil {
			t.Fatal(err)
		}
		var updated []string
		unchanged := 0
		for _, c := range res {
			switch c.Action {
			case "unchanged":
				unchanged++
			default:
				updated = append(updated, c.Service+" "+c.Action)
			}
		}
		if !slices.Equal(updated, []string{"s4321 updated"}) || unchanged != services-1 {
			t.Fatalf("change %d: %v and %d unchanged, want s4321 updated and %d unchanged", k, updated, unchanged, services-1)
		}
		prev = ch
	}
	// What the Target remembers of the state in force is what the maps hold.
	if differ, err := tg.CheckInForce(); err != nil || len(differ) != 0 {
		t.Fatalf("services remembered unlike the maps: %v (%v)", differ, err)
	}
	// Back to generation 0: the checked services route to their listeners,
	// and a Target that remembers nothing (it reads the maps) finds every
	// service as the scoped applies left it.
	daemonApply(t, tg, scaleConfig(services, 0), prev)
	checkScaleRoutes(t, env)
	fresh := env.Target()
	res, err := fresh.Apply(loader.BuildFunc((&inputs.Change{Native: parse(t, scaleConfig(services, 0)), Exact: true}).Build),
		loader.ApplyOptions{Daemon: true, DaemonFile: "scale.yaml", KeepOverrides: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res {
		if c.Action != "unchanged" {
			t.Fatalf("a full apply after the scoped ones: %s %s, want every service unchanged", c.Service, c.Action)
		}
	}
	slices.Sort(took)
	slices.Sort(cpu)
	t.Logf("one changed service among %d, applied as the daemon: median %v, max %v (of %d); CPU median %v, max %v", services,
		took[len(took)/2].Round(100*time.Microsecond), took[len(took)-1].Round(100*time.Microsecond), len(took),
		cpu[len(cpu)/2].Round(100*time.Microsecond), cpu[len(cpu)-1].Round(100*time.Microsecond))
}

// cpuTime is the test process's user and system time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
