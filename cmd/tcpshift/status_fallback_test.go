package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// status through the CLI on a host whose kernel gives live bytes through
// sock_diag only, then through neither: it always answers, and says which.
func TestCLIStatusLiveBytesPaths(t *testing.T) {
	t.Setenv(features.DisableEnv, string(features.IterSkStorage))
	env := testenv.New(t)
	env.Join() // sockops counts the listeners' sockets
	env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	c := shell{t, env}
	t.Cleanup(func() { c.run("down") })
	c.must("apply", "-f", writeFile(t, routes))
	conn, err := c.env.Dial("127.0.0.100:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if reply, err := echo.Ask(conn, "hello"); err != nil || reply != "one hello" {
		t.Fatalf("first connection: %q %v", reply, err)
	}
	var st loader.Status
	if err := json.Unmarshal([]byte(c.must("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	v1 := st.Services[0].Subsets[0].Endpoints[0]
	if st.LiveBytes != loader.LiveBytesSockDiag || v1.Active != 1 || v1.BytesIn != 6 || v1.BytesOut != 10 {
		t.Fatalf("live bytes through %q: v1 %+v; want sock_diag, 1 active, 6 bytes in, 10 out", st.LiveBytes, v1.Counters)
	}
	if out := c.must("status"); strings.Contains(out, "closed connections only") || !strings.Contains(out, "6 B") {
		t.Fatalf("status with live bytes through sock_diag:\n%s", out)
	}

	t.Setenv(features.DisableEnv, string(features.IterSkStorage)+","+string(features.DiagStorage))
	out := c.must("status")
	if !strings.Contains(out, "BYTES count closed connections only") || !strings.Contains(out, "tcpshift doctor") {
		t.Fatalf("status without live bytes does not say so:\n%s", out)
	}
	if err := json.Unmarshal([]byte(c.must("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	v1 = st.Services[0].Subsets[0].Endpoints[0]
	if st.LiveBytes != "" || st.LiveBytesUnavailable == "" || v1.Active != 1 || v1.BytesIn != 0 || v1.BytesOut != 0 {
		t.Fatalf("without live bytes: %q (%q), v1 %+v; want none, a reason, 1 active and no bytes yet", st.LiveBytes, st.LiveBytesUnavailable, v1.Counters)
	}
}
