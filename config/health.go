package config

import (
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Health check defaults, as HAProxy users know them (inter 2s, rise 2,
// fall 3), with a timeout below the interval.
const (
	DefaultHealthInterval = 2 * time.Second
	DefaultHealthTimeout  = time.Second
	DefaultHealthRise     = 2
	DefaultHealthFall     = 3
	maxHealthThreshold    = 100
)

// Health configures the TCP connect probes `tcpshift run` sends to every
// endpoint of a service.
type Health struct {
	Interval time.Duration // between two probes of an endpoint
	Timeout  time.Duration // a probe that has not connected by then fails
	Rise     int           // consecutive successes that bring a down endpoint up
	Fall     int           // consecutive failures that take an endpoint down
	// Passive counts connects that failed in the kernel (connect and proxy
	// mode) as failed probes.
	Passive bool
}

var healthFields = []string{"interval", "timeout", "rise", "fall", "passive"}

func (p *parser) health(n *yaml.Node, f string) *Health {
	if isNull(n) {
		return nil
	}
	h := &Health{
		Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout,
		Rise: DefaultHealthRise, Fall: DefaultHealthFall, Passive: true,
	}
	var timeoutNode *yaml.Node
	ok := p.mapping(n, f, healthFields, func(key string, _, v *yaml.Node) {
		ff := f + "." + key
		switch key {
		case "interval":
			if d, ok := p.duration(v, ff, "interval"); ok {
				h.Interval = d
			}
		case "timeout":
			timeoutNode = v
			if d, ok := p.duration(v, ff, "timeout"); ok {
				h.Timeout = d
			}
		case "rise":
			if c, ok := p.count(v, ff); ok {
				h.Rise = c
			}
		case "fall":
			if c, ok := p.count(v, ff); ok {
				h.Fall = c
			}
		case "passive":
			if b, ok := p.boolean(v, ff); ok {
				h.Passive = b
			}
		}
	})
	if ok && h.Timeout > h.Interval {
		at := timeoutNode
		if at == nil {
			at = n
		}
		p.fail(at, f+".timeout", "timeout %s is longer than the interval %s", h.Timeout, h.Interval)
	}
	return h
}

// duration parses a positive Go duration such as 500ms or 2s; name is the
// field as errors call it.
func (p *parser) duration(n *yaml.Node, f, name string) (time.Duration, bool) {
	val, ok := p.scalar(n, f, "a duration")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(val)
	if err != nil {
		p.fail(n, f, "invalid duration %s (use a go duration such as 500ms, 30s or 5m)", quote(val))
		return 0, false
	}
	if d <= 0 {
		p.fail(n, f, "%s must be greater than 0, got %s", name, val)
		return 0, false
	}
	return d, true
}

// count parses a threshold from 1 to maxHealthThreshold.
func (p *parser) count(n *yaml.Node, f string) (int, bool) {
	val, ok := p.scalar(n, f, "a number")
	if !ok {
		return 0, false
	}
	c, err := strconv.Atoi(val)
	if err != nil || c < 1 || c > maxHealthThreshold {
		p.fail(n, f, "invalid count %s (a whole number from 1 to %d)", quote(val), maxHealthThreshold)
		return 0, false
	}
	return c, true
}

// boolean parses true or false.
func (p *parser) boolean(n *yaml.Node, f string) (bool, bool) {
	val, ok := p.scalar(n, f, "true or false")
	if !ok {
		return false, false
	}
	switch val {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	p.fail(n, f, "invalid value %s (allowed: true, false)", quote(val))
	return false, false
}
