package test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/internal/testenv"
)

// scrape fetches /metrics from inside the namespace and parses it.
func scrape(t *testing.T, env *testenv.Env, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) { return env.Dial(addr) },
	}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value returns the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no %s%v", name, want)
	return 0
}

func TestDaemonMetrics(t *testing.T) {
	const addr = "127.0.0.1:9090" // inside the test's namespace
	env := testenv.New(t)
	env.Join() // sockops counts the listeners' sockets: they must be in the cgroup
	echoPair(env)
	path := newConfigFile(t, echoConfig)
	d := startDaemon(t, env, path, addr)
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	eventually(t, d.tg, counters(0, 0, 8, 2))

	svc := map[string]string{"service": "tcp-echo"}
	v1 := map[string]string{"service": "tcp-echo", "subset": "v1", "endpoint": "127.0.0.1:9001"}
	v2 := map[string]string{"service": "tcp-echo", "subset": "v2", "endpoint": "127.0.0.1:9002"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	fams := scrape(t, env, addr)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tcpshift_service_info", map[string]string{"service": "tcp-echo", "listen": frontend, "mode": "lookup"}, 1},
		{"tcpshift_connections_total", v1, 8},
		{"tcpshift_connections_total", v2, 2},
		{"tcpshift_connections_active", v1, 0},
		{"tcpshift_bytes_total", with(v1, "direction", "in"), 8 * askIn},
		{"tcpshift_bytes_total", with(v2, "direction", "out"), 2 * askOut},
		{"tcpshift_connect_failures_total", v2, 0},
		{"tcpshift_endpoint_healthy", v1, 1},
		{"tcpshift_subset_weight", map[string]string{"service": "tcp-echo", "subset": "v1"}, 80},
		{"tcpshift_subset_share_ratio", map[string]string{"service": "tcp-echo", "subset": "v2"}, 0.2},
		{"tcpshift_table_swaps_total", svc, 1},
		{"tcpshift_refused_connections_total", svc, 0},
		{"tcpshift_lookups_no_socket_total", svc, 0},
		{"tcpshift_config_reloads_total", nil, 1},
		{"tcpshift_config_reload_failures_total", nil, 0},
		{"tcpshift_config_last_reload_successful", nil, 1},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_open_fds"] == nil {
		t.Error("no Go runtime or process metrics")
	}
	// Every kernel facility, as the probe finds it, in the metrics and
	// in the daemon's log at start.
	d.wantLines(t, `msg="kernel feature"`, len(features.All))
	for _, f := range features.All {
		want, line := 1.0, "feature="+string(f.Name)+" available=true"
		if features.Check(f.Name) != nil {
			want, line = 0, "feature="+string(f.Name)+" available=false"
		}
		if got := value(t, fams, "tcpshift_kernel_feature", map[string]string{"feature": string(f.Name)}); got != want {
			t.Errorf("tcpshift_kernel_feature{feature=%s} = %v, want %v", f.Name, got, want)
		}
		d.wantLines(t, line, 1)
	}

	// A refused file, a weight change and an active connection show up.
	writeConfig(t, path, "services: [")
	d.waitLog(t, "route config refused", 1)
	setWeights(t, d.tg, 0, 100)
	c, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, d.tg, counters(0, 1, 8, 2))
	fams = scrape(t, env, addr)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tcpshift_config_reload_failures_total", nil, 1},
		{"tcpshift_config_last_reload_successful", nil, 0},
		{"tcpshift_table_swaps_total", svc, 2},
		{"tcpshift_subset_share_ratio", map[string]string{"service": "tcp-echo", "subset": "v2"}, 1},
		{"tcpshift_connections_active", v2, 1},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
