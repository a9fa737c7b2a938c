package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// wantLiveBytes checks which path status took to read live bytes.
func wantLiveBytes(t *testing.T, tg *loader.Target, want string) {
	t.Helper()
	st, err := tg.Status("tcp-echo")
	if err != nil {
		t.Fatal(err)
	}
	if st.LiveBytes != want {
		t.Fatalf("status read live bytes through %q (unavailable: %q), want %q", st.LiveBytes, st.LiveBytesUnavailable, want)
	}
}

// preferredLiveBytes is the path status must take on this host: the
// iterator where the kernel loads it, else sock_diag.
func preferredLiveBytes() string {
	if features.Check(features.IterSkStorage) == nil {
		return loader.LiveBytesIterator
	}
	return loader.LiveBytesSockDiag
}

// Live bytes of open connections, exact per endpoint, through each path:
// the one this host prefers, and socket diagnostics with the iterator off
// (the path hosts that refuse iter/bpf_sk_storage_map take).
func TestLiveBytes(t *testing.T) {
	for _, tc := range []struct {
		name, disable, want string
	}{
		{"preferred", "", preferredLiveBytes()},
		{"sock_diag", string(features.IterSkStorage), loader.LiveBytesSockDiag},
	} {
		t.Run(tc.name+"/lookup", func(t *testing.T) {
			t.Setenv(features.DisableEnv, tc.disable)
			env := testenv.New(t)
			env.Join()
			echoPair(env)
			tg := env.Target()
			apply(t, tg, echoConfig)
			wantLiveBytes(t, tg, tc.want)
			checkAccounting(t, env, tg, frontend)
		})
		t.Run(tc.name+"/connect", func(t *testing.T) {
			t.Setenv(features.DisableEnv, tc.disable)
			env := remotePair(t)
			tg := env.Target()
			apply(t, tg, connectConfig)
			wantLiveBytes(t, tg, tc.want)
			checkAccounting(t, env, tg, "10.96.0.10:9000")
		})
	}
}

// With neither path, status still answers: the counters of closed
// connections, and why the live bytes are missing.
func TestStatusWithoutLiveBytes(t *testing.T) {
	t.Setenv(features.DisableEnv, string(features.IterSkStorage)+","+string(features.DiagStorage))
	env := testenv.New(t)
	env.Join()
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	c, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := echo.Ask(c, "hello"); err != nil { // stays open
		t.Fatal(err)
	}
	if _, err := env.Ask(frontend); err != nil { // closed
		t.Fatal(err)
	}
	st, err := tg.Status("tcp-echo")
	if err != nil {
		t.Fatalf("status failed for want of live bytes: %v", err)
	}
	if st.LiveBytes != "" || !strings.Contains(st.LiveBytesUnavailable, string(features.IterSkStorage)) ||
		!strings.Contains(st.LiveBytesUnavailable, string(features.DiagStorage)) {
		t.Fatalf("live bytes %q, unavailable %q: want none, naming both facilities", st.LiveBytes, st.LiveBytesUnavailable)
	}
	eventually(t, tg, func(s loader.ServiceStatus) error {
		// One open connection; only the closed one's exchange is counted
		// (with live bytes it would be twice that), whichever endpoint
		// took each.
		var active, in, out uint64
		for _, sub := range s.Subsets {
			active += sub.Active
			in += sub.BytesIn
			out += sub.BytesOut
		}
		if active != 1 || in != askIn || out != askOut {
			return fmt.Errorf("active %d, bytes in/out %d/%d: want 1 active and %d/%d, the closed exchange's", active, in, out, askIn, askOut)
		}
		return nil
	})
}
