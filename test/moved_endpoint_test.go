package test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
)

const beforeMove = `services:
- name: tcp-echo
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002, 127.0.0.1:9003]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

// What tcpshift agent applies when a pod terminates: the endpoint leaves
// its subset for one at weight 0 while its connections drain.
const afterMove = `services:
- name: tcp-echo
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9003]}
    terminating: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

// An endpoint that moves to another subset of its service keeps its id:
// the connection it holds stays counted there, and drains visibly.
func TestEndpointMovedKeepsCounters(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two-a")
	env.Echo("127.0.0.1:9003", "two-b")
	env.Join()
	tg := env.Target()
	apply(t, tg, beforeMove)

	var held net.Conn
	for i := 0; held == nil; i++ {
		if i == 20 {
			t.Fatal("no connection reached 127.0.0.1:9002 in 20")
		}
		c, err := env.Dial("10.96.0.10:9000")
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		reply, err := echo.Ask(c, "x")
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(reply, "two-a ") {
			held = c
		} else {
			c.Close()
		}
	}
	defer held.Close()
	before := status(t, tg).Subsets[1].Endpoints[0]
	if before.Address != "127.0.0.1:9002" || before.Active != 1 {
		t.Fatalf("before: %+v", before)
	}

	apply(t, tg, afterMove)
	st := status(t, tg)
	if len(st.Subsets) != 3 || st.Subsets[2].Name != "terminating" {
		t.Fatalf("subsets after the move: %+v", st.Subsets)
	}
	moved := st.Subsets[2].Endpoints[0]
	if moved.Active != 1 || moved.Connections != before.Connections {
		t.Fatalf("the moved endpoint shows %d active and %d connections, want 1 and %d", moved.Active, moved.Connections, before.Connections)
	}
	if reply, err := echo.Ask(held, "still"); err != nil || reply != "two-a still" {
		t.Fatalf("held connection: %q %v", reply, err)
	}
	for range 10 {
		if got, err := env.Ask("10.96.0.10:9000"); err != nil || got == "two-a" {
			t.Fatalf("a new connection: %q %v, want none to the terminating endpoint", got, err)
		}
	}
	held.Close()
	deadline := time.Now().Add(5 * time.Second)
	for status(t, tg).Subsets[2].Endpoints[0].Active != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the drained connection still counts as active")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
