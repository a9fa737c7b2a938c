package test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/loader"
)

const carriedShift = echoConfig + `  shift: {to: v2, steps: [20, 100], interval: 2s}
`

// tcpshift run carries a shift: block: it runs the shift, and a daemon
// killed mid-shift leaves it interrupted at its step, which the next daemon
// resumes and finishes.
func TestDaemonCarriesShift(t *testing.T) {
	env, tg := shiftEnv(t)
	bin := buildTcpshift(t)
	path := filepath.Join(t.TempDir(), "routes.yaml")
	// v1 at 100 in the file; the shift moves it.
	if err := os.WriteFile(path, []byte(strings.Replace(carriedShift, "weight: 20}", "weight: 0}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	first := startDaemonProcess(t, env, bin, "run", "-f", path)
	waitShift(t, tg, func(done int, state string) bool { return done == 1 && state == "running" })
	if got := env.Count(frontend, 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("at the first step (20%%): %v", got)
	}
	first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait()
	if s := status(t, tg); s.Shift.State != "interrupted" || s.Subsets[1].Percent != 20 {
		t.Fatalf("after kill -9 of the daemon: shift %+v, %v%% to v2", s.Shift, s.Subsets[1].Percent)
	}
	second := startDaemonProcess(t, env, bin, "run", "-f", path)
	second.waitLog(t, `msg="shift carried from the route config"`, 1)
	if len(second.log.lines("resume=true")) != 1 {
		t.Fatalf("the second daemon did not resume the shift:\n%s", second.log.b.String())
	}
	waitShift(t, tg, func(done int, state string) bool { return state == "done" })
	if got := env.Count(frontend, 10); !maps.Equal(got, map[string]int{"two": 10}) {
		t.Fatalf("after the carried shift: %v", got)
	}
	if s := status(t, tg); !strings.Contains(s.Shift.Note, "all steps passed") {
		t.Fatalf("shift %+v", s.Shift)
	}
}

// waitShift waits until the service's shift is where ok says.
func waitShift(t *testing.T, tg *loader.Target, ok func(done int, state string) bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := status(t, tg)
		if s.Shift != nil && ok(s.Shift.Done, s.Shift.State) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shift %+v never got there", s.Shift)
		}
	}
}
