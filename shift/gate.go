// Package shift runs progressive shifts: a service's weight moves to one
// subset step by step, each step held for an interval and judged by gates on
// what TCP itself says in the kernel (failed connects, resets), with an
// automatic rollback when a gate fails. The state lives in the kernel state
// (loader), so status, --abort and --pause work from any shell.
package shift

import (
	"fmt"
	"strings"

	"github.com/tcpshift/tcpshift/loader"
)

// Gates are the thresholds a step must pass.
type Gates struct {
	MaxFailureRate float64 // failed connects / connections of the new subset, 0..1
	MaxResetRate   float64 // resets after establishment / connections, 0..1
	MinConnections uint64  // the new subset's connections a step needs to be judged
}

// Figures are one subset's (or several's) counts over an interval.
type Figures struct {
	Connections, Failed, Resets uint64
}

func (f Figures) String() string {
	return fmt.Sprintf("%d connections, %d failed, %d resets", f.Connections, f.Failed, f.Resets)
}

func (f *Figures) add(c loader.Counters) {
	f.Connections += c.Connections
	f.Failed += c.Failed
	f.Resets += c.Resets
}

func (f Figures) minus(o Figures) Figures {
	return Figures{sub(f.Connections, o.Connections), sub(f.Failed, o.Failed), sub(f.Resets, o.Resets)}
}

// sub is a-b for counters that a released endpoint id may have reset.
func sub(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return a - b
}

// rate is part of total, 0 when total is.
func rate(part, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(part) / float64(total)
}

// Failure is a gate that failed, with its figures.
type Failure struct {
	Gate string // failure-rate, reset-rate, min-connections, check
	Msg  string
}

func (f *Failure) Error() string { return "gate " + f.Gate + " failed: " + f.Msg }

// judge applies the rate gates to one interval: the new subset's figures
// against the old subsets' in the same interval. A failed connect counts
// among the connections it was meant to be: the rate is of attempts.
func (g Gates) judge(to string, target, others Figures) *Failure {
	if g.MaxFailureRate >= 0 {
		r := rate(target.Failed, target.Connections)
		if target.Failed > 0 && r > g.MaxFailureRate {
			return &Failure{"failure-rate", fmt.Sprintf("%s: %d of %d connects failed (%s > %s; the other subsets: %d of %d)",
				to, target.Failed, target.Connections, pct(r), pct(g.MaxFailureRate), others.Failed, others.Connections)}
		}
	}
	if g.MaxResetRate >= 0 {
		r := rate(target.Resets, target.Connections)
		if target.Resets > 0 && r > g.MaxResetRate {
			return &Failure{"reset-rate", fmt.Sprintf("%s: %d of %d connections reset (%s > %s; the other subsets: %d of %d)",
				to, target.Resets, target.Connections, pct(r), pct(g.MaxResetRate), others.Resets, others.Connections)}
		}
	}
	return nil
}

func pct(r float64) string {
	s := fmt.Sprintf("%.1f", r*100)
	return strings.TrimSuffix(strings.TrimSuffix(s, "0"), ".") + "%"
}
