package agent

import (
	"context"
	"testing"
	"time"
)

// A burst of events makes one apply; a stream that never goes quiet is
// still applied within maxDelay of its first event.
func TestBatches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan struct{}, 1)
	applied := make(chan time.Time, 10)
	go batches(ctx, events, 50*time.Millisecond, time.Hour, func(first time.Time) { applied <- first })
	for range 5 {
		signal(events)
	}
	<-applied
	select {
	case <-applied:
		t.Fatal("one burst applied twice")
	case <-time.After(200 * time.Millisecond):
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	stream := make(chan struct{}, 1)
	go batches(ctx2, stream, time.Hour, 100*time.Millisecond, func(first time.Time) { applied <- first })
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				signal(stream)
			}
		}
	}()
	select {
	case <-applied:
	case <-time.After(5 * time.Second):
		t.Fatal("a stream of events that never went quiet was not applied after maxDelay")
	}
}
