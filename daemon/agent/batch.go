package agent

import (
	"context"

	"github.com/tcpshift/tcpshift/daemon/reconcile"
)

// follow hands the informers' signals to the reconcile loop, which batches
// them (debounce, max delay), until ctx ends.
func follow(ctx context.Context, changed <-chan struct{}, loop *reconcile.Loop) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			loop.Changed(reconcile.Event{})
		}
	}
}

// signal notes that something changed without blocking: one pending note
// stands for any number of events.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
