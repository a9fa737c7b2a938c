package test

import (
	"maps"
	"testing"

	"github.com/tcpshift/tcpshift/internal/testenv"
)

// everyNetnsConfig sends a node's pods to endpoints on their own loopback,
// so which namespace a connection was rewritten in shows in the answer.
const everyNetnsConfig = `services:
- name: tcp-echo
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

// With EveryNetns (tcpshift agent), the connect hooks rewrite connections of
// every namespace under the cgroup, as a node's pods each have their own;
// the setting outlives the target that made it until down.
func TestConnectEveryNetns(t *testing.T) {
	env := testenv.New(t)
	pod := testenv.New(t)
	pod.Echo("127.0.0.1:9001", "pod-one")
	pod.Echo("127.0.0.1:9002", "pod-two")
	env.Join()

	plain := env.Target()
	apply(t, plain, everyNetnsConfig)
	if _, err := pod.Dial("10.96.0.10:9000"); err == nil {
		t.Fatal("without EveryNetns, a pod namespace's connect() was rewritten")
	}
	if _, err := plain.Down(); err != nil {
		t.Fatal(err)
	}

	tg := env.Target()
	tg.EveryNetns = true
	apply(t, tg, everyNetnsConfig)
	if got := pod.Count("10.96.0.10:9000", 10); !maps.Equal(got, map[string]int{"pod-one": 8, "pod-two": 2}) {
		t.Fatalf("pod namespace: %v, want pod-one 8, pod-two 2", got)
	}
	c, err := pod.Dial("10.96.0.10:9000")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "10.96.0.10:9000" {
		t.Fatalf("getpeername in the pod: %s, want the ClusterIP 10.96.0.10:9000", got)
	}
	c.Close()

	// A later writer that does not ask for it (a CLI set-weight) keeps it.
	later := env.Target()
	setWeights(t, later, 0, 1)
	if got := pod.Count("10.96.0.10:9000", 3); !maps.Equal(got, map[string]int{"pod-two": 3}) {
		t.Fatalf("after a set-weight without EveryNetns: %v, want pod-two 3", got)
	}
	// The eleventh connection (the getpeername one) starts the sequence
	// again, at v1.
	st := status(t, later)
	if v1, v2 := st.Subsets[0].Endpoints[0].Connections, st.Subsets[1].Endpoints[0].Connections; v1 != 8+1 || v2 != 2+3 {
		t.Fatalf("counted v1 %d, v2 %d, want 9 and 5", v1, v2)
	}
}
