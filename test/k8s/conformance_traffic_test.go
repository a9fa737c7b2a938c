//go:build k8s

package k8s

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/tcpshift/tcpshift/test/k8s/nodes"
)

// The suite's traffic assertions: new connections from outside the
// cluster (the test's own network namespace) to a Gateway's address.

// gatewayAddr is the suite's WaitForGatewayAddress: the first address in
// gw's status that has a type, at the port of listener.
func (s *suite) gatewayAddr(t *testing.T, gw, listener string) string {
	t.Helper()
	var addr string
	eventually(t, "Gateway "+gw+" has an address", func() error {
		u, st, err := s.gateway(gw)
		if err != nil {
			return err
		}
		var port any
		for _, l := range items(asMap(u.Object["spec"]), "listeners") {
			if lm := asMap(l); port == nil || lm["name"] == listener {
				port = lm["port"]
			}
		}
		for _, a := range items(st, "addresses") {
			if am := asMap(a); am["type"] != nil {
				addr = net.JoinHostPort(fmt.Sprint(am["value"]), fmt.Sprint(port))
				return nil
			}
		}
		return fmt.Errorf("addresses: %v", st["addresses"])
	})
	return addr
}

// expectBackend is the suite's MakeTCPRequestAndExpectEventuallyValidResponse:
// new connections to addr until one completes the handshake (within the
// suite's 30 s); its TEST answer must name a pod of backend in namespace ns.
func expectBackend(t *testing.T, addr, backend, ns string) {
	t.Helper()
	var a nodes.EchoBasicAnswer
	eventually(t, "a connection through "+addr, func() (err error) {
		a, err = echoSend(addr, true)
		return err
	})
	if a.Namespace != ns || !strings.HasPrefix(a.Pod, backend+"-") {
		t.Fatalf("%s answered by pod %s/%s, want one of %s/%s", addr, a.Namespace, a.Pod, ns, backend)
	}
}

// dialOnly is one try of the suite's ExpectAddressBeAvailable: a
// connection to addr opens.
func dialOnly(addr string) error {
	c, err := net.DialTimeout("tcp", addr, echoTimeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// backendOf is the suite's extractBackendName: a pod's name without its
// ReplicaSet hash and suffix.
func backendOf(pod string) string {
	parts := strings.Split(pod, "-")
	if len(parts) < 3 {
		return pod
	}
	return strings.Join(parts[:len(parts)-2], "-")
}

// spread makes n new connections to addr, 10 at a time as the suite's
// TestWeightedDistribution does, and counts them by backend.
func spread(addr string, n int) (map[string]int, error) {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		counts = map[string]int{}
		errs   []error
		slots  = make(chan struct{}, 10)
	)
	for range n {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			a, err := echoSend(addr, false)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			counts[backendOf(a.Pod)]++
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return counts, fmt.Errorf("%d of %d connections failed, the first: %w", len(errs), n, errs[0])
	}
	return counts, nil
}

// withinShares is the suite's check of a split of n connections: the
// backends of a share > 0 and no other took some, each within 0.05 of
// its share.
func withinShares(got map[string]int, shares map[string]float64, n int) error {
	var errs []error
	active := 0
	for b, share := range shares {
		if share > 0 {
			active++
		}
		if d := math.Abs(float64(got[b])/float64(n) - share); d > 0.05 {
			errs = append(errs, fmt.Errorf("backend %s: %d of %d connections, off its share %v by %.3f", b, got[b], n, share, d))
		}
	}
	if len(got) != active {
		errs = append(errs, fmt.Errorf("%d backends took connections, want the %d of a share > 0", len(got), active))
	}
	return errors.Join(errs...)
}

// weightedSplit is the suite's WeightedRouting check: up to 10 tries (its
// MaxTestRetries) of n connections split within its tolerance; the split
// of the try that passes must also be exactly exact.
func weightedSplit(t *testing.T, addr string, n int, shares map[string]float64, exact map[string]int) {
	t.Helper()
	for try := 1; try <= 10; try++ {
		got, err := spread(addr, n)
		if err == nil {
			err = withinShares(got, shares, n)
		}
		if err != nil {
			t.Logf("try %d of 10 through %s: %v", try, addr, err)
			continue
		}
		t.Logf("try %d: %d connections through %s: %v", try, n, addr, got)
		if !maps.Equal(got, exact) {
			t.Fatalf("split %v of %d, want exactly %v", got, n, exact)
		}
		return
	}
	t.Fatalf("no split within the suite's tolerance in 10 tries through %s", addr)
}

// onlyBackend makes n new connections to addr, one after another, each
// of which must reach a pod of backend (the suite's sampling in
// MultipleRoutesAttachment).
func onlyBackend(t *testing.T, addr, backend string, n int) {
	t.Helper()
	for i := range n {
		a, err := echoSend(addr, false)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, n, err)
		}
		if !strings.HasPrefix(a.Pod, backend+"-") {
			t.Fatalf("connection %d of %d reached pod %s, want one of %s", i+1, n, a.Pod, backend)
		}
	}
}
