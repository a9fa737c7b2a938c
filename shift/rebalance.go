package shift

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// RebalanceOptions configure a rebalance.
type RebalanceOptions struct {
	Service string
	Subsets []string      // whose established connections are closed
	Over    time.Duration // the window the closes are spread over
	// MaxPerSecond caps the closes in any one second (0: no cap beyond
	// the spread).
	MaxPerSecond int
	Tick         time.Duration // how often a batch is closed (100 ms when 0)
	Out          io.Writer
}

var rebalancePathName = map[string]string{
	loader.RebalanceIterator: "bpf_sock_destroy from a BPF socket iterator",
	loader.RebalanceSockDiag: "sock_diag SOCK_DESTROY (the BPF iterator is unavailable here: tcpshift doctor)",
}

// Rebalance closes the subsets' established connections gradually, spread
// evenly over the window with jitter and never above MaxPerSecond in any
// second, so that their clients reconnect by the weights in force instead
// of all at once. It returns once the subsets hold no connection.
func Rebalance(ctx context.Context, tg *loader.Target, o RebalanceOptions) error {
	if o.Over <= 0 {
		return fmt.Errorf("--over %s: must be above 0", o.Over)
	}
	if o.Tick <= 0 {
		o.Tick = 100 * time.Millisecond
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	ids, err := endpointIDs(tg, o.Service, o.Subsets)
	if err != nil {
		return err
	}
	active, err := activeOf(tg, o.Service, o.Subsets)
	if err != nil {
		return err
	}
	total := active
	fmt.Fprintf(o.Out, "rebalance %s %v: %d connections over %s", o.Service, o.Subsets, total, o.Over)
	if o.MaxPerSecond > 0 {
		fmt.Fprintf(o.Out, ", at most %d a second", o.MaxPerSecond)
	}
	fmt.Fprintln(o.Out)
	if total == 0 {
		return nil
	}
	r, err := tg.NewRebalancer(ids)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Fprintf(o.Out, "closing them with %s\n", rebalancePathName[r.Path])
	type batch struct {
		at time.Time
		n  int
	}
	var (
		recent []batch
		closed int
		start  = time.Now()
	)
	for {
		now := time.Now()
		elapsed := now.Sub(start)
		// A tick ahead of the even spread, so the last batch falls
		// inside the window, not just after it.
		goal := total
		if ahead := elapsed + o.Tick; ahead < o.Over {
			goal = int((int64(total)*int64(ahead) + int64(o.Over) - 1) / int64(o.Over))
		}
		budget := goal - closed
		if o.MaxPerSecond > 0 {
			kept := recent[:0]
			inSecond := 0
			for _, b := range recent {
				if now.Sub(b.at) < time.Second {
					kept = append(kept, b)
					inSecond += b.n
				}
			}
			recent = kept
			budget = min(budget, o.MaxPerSecond-inSecond)
		}
		n, err := r.Run(budget)
		if err != nil {
			return err
		}
		if n > 0 {
			closed += n
			recent = append(recent, batch{now, n})
		}
		if active, err = activeOf(tg, o.Service, o.Subsets); err != nil {
			return err
		}
		if active == 0 {
			fmt.Fprintf(o.Out, "rebalance %s %v: %d connections closed in %s, none left\n", o.Service, o.Subsets, closed, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		if active > total-closed {
			total = closed + active // new ones came (a weight above 0): close them too
		}
		// Jitter keeps the closes from beating with anything periodic.
		wait := time.Duration(float64(o.Tick) * (0.7 + 0.6*rand.Float64()))
		select {
		case <-ctx.Done():
			return fmt.Errorf("rebalance stopped after %d of %d connections: %w", closed, total, context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

// endpointIDs returns the endpoint ids of a service's subsets.
func endpointIDs(tg *loader.Target, service string, subsets []string) ([]uint32, error) {
	var ids []uint32
	err := tg.Read(func(set *maps.Set) error {
		svc, ok, err := set.Service(service)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w %q", loader.ErrNoService, service)
		}
		if svc.NoAccounting {
			return fmt.Errorf("service %s has accounting: false: rebalance closes the connections tcpshift counts, and it counts none of these", service)
		}
		for _, name := range subsets {
			i := svc.Subset(name)
			if i < 0 {
				return fmt.Errorf("service %s has no subset %q", service, name)
			}
			for _, ep := range svc.Subsets[i].Endpoints {
				ids = append(ids, ep.ID)
			}
		}
		return nil
	})
	if err == nil && len(ids) == 0 {
		err = errors.New("no endpoints to rebalance")
	}
	return ids, err
}

func activeOf(tg *loader.Target, service string, subsets []string) (int, error) {
	n := 0
	for _, s := range subsets {
		load, err := tg.Load(service, s)
		if err != nil {
			return 0, err
		}
		n += int(load.Active)
	}
	return n, nil
}
