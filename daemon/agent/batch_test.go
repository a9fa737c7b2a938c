package agent

import (
	"context"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/daemon/reconcile"
)

// The informers' signals reach the loop: a burst of them is one sync.
func TestFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	synced := make(chan reconcile.Batch, 10)
	loop := reconcile.New(reconcile.Options{Debounce: 50 * time.Millisecond, MaxDelay: time.Second,
		Sync: func(_ context.Context, b reconcile.Batch) (reconcile.Result, error) {
			synced <- b
			return reconcile.Result{}, nil
		}})
	changed := make(chan struct{}, 1)
	go follow(ctx, changed, loop)
	go loop.Run(ctx)
	for range 5 {
		signal(changed)
	}
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		t.Fatal("the signals made no sync")
	}
	select {
	case b := <-synced:
		t.Fatalf("one burst synced twice (%+v)", b)
	case <-time.After(300 * time.Millisecond):
	}
}
