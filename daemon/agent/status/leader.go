package status

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the coordination.k8s.io Lease the agents contend for.
const LeaseName = "tcpshift-status"

// Defaults of the Lease's timings (client-go's usual ones) and the resync.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	DefaultResync        = 30 * time.Second
)

// Run contends for the Lease until ctx ends and writes while it holds it.
// A leader that stops gives the Lease up, so another takes it at once.
func (w *Writer) Run(ctx context.Context) error {
	o := w.o
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaseNamespace, Name: LeaseName},
		Client:     o.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	// A shorter lease renews and retries as often, in proportion.
	lease := cmpDur(o.LeaseDuration, DefaultLeaseDuration)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            LeaseName,
		LeaseDuration:   lease,
		RenewDeadline:   cmpDur(o.RenewDeadline, lease*2/3),
		RetryPeriod:     cmpDur(o.RetryPeriod, lease*2/15),
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: w.lead,
			OnStoppedLeading: func() { o.Log.Info("status: not the writer now", "lease", o.LeaseNamespace+"/"+LeaseName) },
			OnNewLeader: func(id string) {
				if id != o.Identity {
					o.Log.Info("status: another agent writes it", "writer", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("status writer's lease %s/%s: %w", o.LeaseNamespace, LeaseName, err)
	}
	for ctx.Err() == nil {
		le.Run(ctx) // returns when the lease is lost: contend again
	}
	return nil
}

// lead writes the latest input at once and every one after it, until the
// term ends.
func (w *Writer) lead(ctx context.Context) {
	w.o.Log.Info("status: this agent writes it", "lease", w.o.LeaseNamespace+"/"+LeaseName)
	w.passMu.Lock()
	w.written = map[string]string{} // what the last term wrote may have been changed since
	w.relist = true
	w.passMu.Unlock()
	tick := time.NewTicker(cmpDur(w.o.Resync, DefaultResync))
	defer tick.Stop()
	for {
		if in := w.pending(); in != nil {
			w.Pass(ctx, *in)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-tick.C:
			// By now the informers show our writes: compare with them
			// alone, so a status someone else overwrote is put back.
			w.passMu.Lock()
			w.relist, w.written = true, map[string]string{}
			w.passMu.Unlock()
		}
	}
}

func cmpDur(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
