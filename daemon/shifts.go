package daemon

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/shift"
)

// carried is a shift the route config declares (shift:) that the daemon
// runs.
type carried struct {
	spec   config.Shift
	cancel context.CancelFunc
	done   chan struct{}
}

// carryShifts starts the shifts the config declares and no one runs, and
// resumes the ones a stopped daemon left interrupted. A shift the config no
// longer declares (or declares otherwise) is left at its step. An ended
// shift is not run again until its block changes.
func (d *daemon) carryShifts(parent context.Context) {
	want := map[string]*config.Service{}
	for i := range d.cfg.Services {
		if s := &d.cfg.Services[i]; s.Shift != nil {
			want[s.Name] = s
		}
	}
	for name, c := range d.shifts {
		if s, ok := want[name]; ok && sameShift(*s.Shift, c.spec) {
			continue
		}
		c.cancel()
		<-c.done
		delete(d.shifts, name)
		d.log.Info("shift no longer in the route config: left at its step", "service", name)
	}
	for name, svc := range want {
		if _, ok := d.shifts[name]; ok {
			continue
		}
		spec := *svc.Shift
		resume := false
		if sh, ok, err := d.o.Target.ShiftOf(name); err != nil {
			d.log.Error("read shift", "service", name, "err", err)
			continue
		} else if ok {
			same := sh.To < len(svc.Subsets) && svc.Subsets[sh.To].Name == spec.To && slices.Equal(sh.Percent, spec.Steps)
			switch state := loader.ShiftStateName(sh); {
			case state == "interrupted" && same:
				resume = true
			case (state == "done" || state == "rolled back") && same:
				continue // ended: a changed shift: block starts a new one
			case state == "running" || state == "paused" || state == "aborting":
				d.log.Info("a shift of the service runs elsewhere: not carried", "service", name, "pid", sh.Pid)
				continue
			}
		}
		ctx, cancel := context.WithCancel(parent)
		c := &carried{spec: spec, cancel: cancel, done: make(chan struct{})}
		d.shifts[name] = c
		opts := shift.Options{
			Service: name, To: spec.To, Steps: spec.Steps, Interval: spec.Interval,
			Gates:  shift.Gates{MaxFailureRate: spec.MaxFailureRate, MaxResetRate: spec.MaxResetRate, MinConnections: spec.MinConnections},
			Resume: resume, Detach: true, Rebalance: spec.Rebalance, MaxPerSecond: 100, NoDrain: true,
			Out: &logLines{log: func(line string) { d.log.Info(line, "service", name) }},
			// A step is the shift's, not a set-weight override: logged
			// as such (shiftChange keeps noticeOutsideChanges quiet).
			Stepped: func(step, steps int, weights string) {
				d.log.Info("shift step", "service", name, "step", fmt.Sprintf("%d/%d", step, steps), "percent", spec.Steps[step-1], "weights", weights)
			},
		}
		d.log.Info("shift carried from the route config", "service", name, "to", spec.To, "resume", resume)
		go func() {
			defer close(c.done)
			if err := shift.Run(ctx, d.o.Target, opts); err != nil {
				d.log.Warn("shift ended", "service", name, "err", err)
			}
		}()
	}
}

// shiftChange reports whether a change of svc's weights only, seen since
// the daemon last looked, is a shift's: a step (the shift holds the
// weights, or ended at them) or its rollback to the weights before it.
// The daemon's own shifts log their steps themselves; another process's
// shift is logged here, as a shift step, never as a set-weight override.
func (d *daemon) shiftChange(svc *maps.Service) bool {
	sh, ok, err := d.set.Shift(svc.ID)
	if err != nil || !ok {
		return false
	}
	// A forced set-weight or apply that aborted it set weights of its own.
	rolledBack := sh.State == maps.ShiftRolledBack && !strings.HasPrefix(sh.Note, "aborted by ") &&
		len(sh.Before) >= len(svc.Subsets) && slices.Equal(sh.Before[:len(svc.Subsets)], svc.Weights())
	if !loader.ShiftOwnsWeights(svc, sh) && !rolledBack {
		return false
	}
	if _, ours := d.shifts[svc.Name]; ours && int(sh.Pid) == os.Getpid() {
		return true
	}
	what := "shift step"
	if rolledBack {
		what = "shift rolled back"
	}
	d.log.Info(what, "service", svc.Name, "step", fmt.Sprintf("%d/%d", sh.Done, len(sh.Percent)), "weights", weights(svc, false),
		"pid", sh.Pid, "state", loader.ShiftStateName(sh))
	return true
}

// stopShifts leaves every carried shift at its step (interrupted; the next
// daemon resumes it).
func (d *daemon) stopShifts() {
	for name, c := range d.shifts {
		c.cancel()
		<-c.done
		delete(d.shifts, name)
	}
}

func sameShift(a, b config.Shift) bool {
	a.Line, b.Line = 0, 0
	return a.To == b.To && slices.Equal(a.Steps, b.Steps) && a.Interval == b.Interval &&
		a.MaxFailureRate == b.MaxFailureRate && a.MaxResetRate == b.MaxResetRate &&
		a.MinConnections == b.MinConnections && a.Rebalance == b.Rebalance
}

// logLines turns a shift's progress lines into log records.
type logLines struct {
	mu  sync.Mutex
	buf strings.Builder
	log func(string)
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		s := l.buf.String()
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.log(strings.TrimSpace(s[:i]))
		l.buf.Reset()
		l.buf.WriteString(s[i+1:])
	}
}
