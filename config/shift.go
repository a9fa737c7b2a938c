package config

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Shift is a progressive shift `tcpshift run` carries for a service (the
// shift: block), as `tcpshift shift` runs it by hand: it starts when the
// file declares it and resumes after a restart of the daemon.
type Shift struct {
	To             string
	Steps          []uint32
	Interval       time.Duration
	MaxFailureRate float64 // 0..1
	MaxResetRate   float64 // 0..1
	MinConnections uint64
	Rebalance      bool
	Line           int
}

var shiftFields = []string{"to", "steps", "interval", "max-failure-rate", "max-reset-rate", "min-connections", "rebalance"}

func (p *parser) shift(n *yaml.Node, f string) *Shift {
	if isNull(n) {
		return nil
	}
	s := &Shift{Interval: 30 * time.Second, MaxFailureRate: 0.01, MaxResetRate: 0.01, Line: n.Line}
	p.mapping(n, f, shiftFields, func(key string, _, v *yaml.Node) {
		ff := f + "." + key
		switch key {
		case "to":
			s.To, _ = p.scalar(v, ff, "a subset name")
		case "steps":
			if v.Kind != yaml.SequenceNode {
				p.fail(v, ff, "must be a list of percents, such as [10, 50, 100]")
				return
			}
			for i, item := range v.Content {
				pct, err := strconv.ParseUint(strings.TrimSuffix(item.Value, "%"), 10, 32)
				if err != nil || pct == 0 || pct > 100 {
					p.fail(item, ff, "%s is not a percent 1-100", quote(item.Value))
					return
				}
				if i > 0 && uint32(pct) <= s.Steps[i-1] {
					p.fail(item, ff, "%d after %d: steps must rise", pct, s.Steps[i-1])
					return
				}
				s.Steps = append(s.Steps, uint32(pct))
			}
			if len(s.Steps) == 0 || s.Steps[len(s.Steps)-1] != 100 {
				p.fail(v, ff, "the last step must be 100")
			}
			if len(s.Steps) > 16 {
				p.fail(v, ff, "%d steps, at most 16", len(s.Steps))
			}
		case "interval":
			if d, ok := p.duration(v, ff, "interval"); ok {
				s.Interval = d
			}
		case "max-failure-rate", "max-reset-rate":
			t := strings.TrimSpace(v.Value)
			div := 1.0
			if strings.HasSuffix(t, "%") {
				t, div = strings.TrimSuffix(t, "%"), 100
			}
			r, err := strconv.ParseFloat(t, 64)
			if err != nil || r < 0 || r/div > 1 {
				p.fail(v, ff, "%s is not a rate such as 1%% or 0.01", quote(v.Value))
				return
			}
			if key == "max-failure-rate" {
				s.MaxFailureRate = r / div
			} else {
				s.MaxResetRate = r / div
			}
		case "min-connections":
			if c, ok := p.count(v, ff); ok {
				s.MinConnections = uint64(c)
			}
		case "rebalance":
			s.Rebalance, _ = p.boolean(v, ff)
		}
	})
	if s.To == "" {
		p.fail(n, f+".to", "required field is missing")
	}
	if s.Steps == nil {
		s.Steps = []uint32{10, 20, 50, 100}
	}
	return s
}
