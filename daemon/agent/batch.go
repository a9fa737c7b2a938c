package agent

import (
	"context"
	"time"
)

// batches calls apply once per burst of events: debounce after the last
// event, but never later than maxDelay after the first, so a steady stream
// of events (a rollout) cannot hold a change back. first is when the
// burst's first event came.
func batches(ctx context.Context, events <-chan struct{}, debounce, maxDelay time.Duration, apply func(first time.Time)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
		}
		first := time.Now()
		deadline := time.NewTimer(maxDelay)
		quiet := time.NewTimer(debounce)
	burst:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				quiet.Stop()
				return
			case <-events:
				quiet.Reset(debounce)
			case <-quiet.C:
				break burst
			case <-deadline.C:
				break burst
			}
		}
		deadline.Stop()
		quiet.Stop()
		apply(first)
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
