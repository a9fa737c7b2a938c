package test

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// One echo exchange: "hello\n" towards the endpoint, "one hello\n" or
// "two hello\n" back.
const askIn, askOut = 6, 10

// eventually polls the status of tcp-echo until check passes: sockops
// counts a close when the kernel gets to it, not when Close returns.
func eventually(t *testing.T, tg *loader.Target, check func(loader.ServiceStatus) error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check(status(t, tg))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counters wants, per subset, the active connections and the bytes of n
// exchanges.
func counters(active1, active2, asked1, asked2 uint64) func(loader.ServiceStatus) error {
	return func(s loader.ServiceStatus) error {
		for i, want := range []loader.Counters{
			{Active: active1, BytesIn: asked1 * askIn, BytesOut: asked1 * askOut},
			{Active: active2, BytesIn: asked2 * askIn, BytesOut: asked2 * askOut},
		} {
			got := s.Subsets[i].Endpoints[0].Counters
			got.Connections = 0
			if got != want {
				return fmt.Errorf("subset %s: counters %+v, want %+v", s.Subsets[i].Name, got, want)
			}
		}
		return nil
	}
}

// checkAccounting opens 10 connections to addr, asks once on each, and
// closes them in two rounds; after each step the active connections and
// bytes per endpoint must match exactly.
func checkAccounting(t *testing.T, env *testenv.Env, tg *loader.Target, addr string) {
	byWho := map[string][]net.Conn{}
	for range 10 {
		c, err := env.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		reply, err := echo.Ask(c, "hello")
		if err != nil {
			t.Fatal(err)
		}
		who := reply[:3]
		byWho[who] = append(byWho[who], c)
	}
	if len(byWho["one"]) != 8 || len(byWho["two"]) != 2 {
		t.Fatalf("10 connections: %d to one, %d to two; want 8/2", len(byWho["one"]), len(byWho["two"]))
	}
	eventually(t, tg, counters(8, 2, 8, 2))

	for _, c := range slices.Concat(byWho["one"][:3], byWho["two"][:1]) {
		c.Close()
	}
	eventually(t, tg, counters(5, 1, 8, 2))
	for _, c := range slices.Concat(byWho["one"][3:], byWho["two"][1:]) {
		c.Close()
	}
	eventually(t, tg, counters(0, 0, 8, 2))
	if s := status(t, tg); s.Subsets[0].Connections != 8 || s.Subsets[1].Connections != 2 {
		t.Fatalf("connections assigned %d/%d, want 8/2", s.Subsets[0].Connections, s.Subsets[1].Connections)
	}
}

func TestAccountingLookup(t *testing.T) {
	env := testenv.New(t)
	env.Join() // the listeners' sockets must be in the cgroup sockops watches
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	checkAccounting(t, env, tg, frontend)
}

func TestAccountingConnect(t *testing.T) {
	env := remotePair(t)
	tg := env.Target()
	apply(t, tg, connectConfig)
	checkAccounting(t, env, tg, "10.96.0.10:9000")
}
