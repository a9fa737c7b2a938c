package status

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// Two writers share a Lease: only the holder writes; when it stops, the
// other takes the Lease within the lease duration and rewrites nothing.
func TestOneWriterAndHandover(t *testing.T) {
	f := newFixture(t)
	kube := kubefake.NewSimpleClientset()
	opts := f.w.o
	opts.Kube, opts.LeaseNamespace, opts.LeaseDuration = kube, "tcpshift-system", time.Second
	opts.Resync = time.Hour
	a, b := opts, opts
	a.Identity, b.Identity = "node1", "node2"
	wa, wb := New(a), New(b)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := make(chan struct{})
	go func() {
		if err := wa.Run(ctxA); err != nil {
			t.Error(err)
		}
		close(doneA)
	}()
	wa.Offer(f.in)
	wb.Offer(f.in)
	holder := func() string {
		l, err := kube.CoordinationV1().Leases("tcpshift-system").Get(context.Background(), LeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	waitFor(t, 5*time.Second, func() bool { return holder() == "node1" && patches(f) == 4 })
	go wb.Run(ctxB)
	time.Sleep(1500 * time.Millisecond) // more than a lease: node2 does not take a held Lease
	if h := holder(); h != "node1" || patches(f) != 4 {
		t.Fatalf("holder %q, %d status patches while node1 holds the Lease; want node1, 4", h, patches(f))
	}
	stopA()
	<-doneA
	start := time.Now()
	waitFor(t, 5*time.Second, func() bool { return holder() == "node2" })
	if took := time.Since(start); took > time.Second {
		t.Fatalf("node2 took the Lease after %v, more than the lease duration", took)
	}
	wb.Offer(f.in)
	time.Sleep(200 * time.Millisecond)
	if n := patches(f); n != 4 {
		t.Fatalf("%d status patches after the handover, want still 4 (no flapping)", n)
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
