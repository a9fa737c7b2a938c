package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wantError checks that err is an *Error whose text is exactly want.
func wantError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if err.Error() != want {
		t.Fatalf("error %q\nwant  %q", err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %#v is not an *Error", err)
	}
}

// parseError parses text as routes.yaml and checks the error text.
func parseError(t *testing.T, text, want string) {
	t.Helper()
	cfg, err := Parse("routes.yaml", []byte(text))
	if err == nil {
		t.Fatalf("no error, got %+v; want %q", cfg, want)
	}
	wantError(t, err, want)
}

const noServices = "services: no services: a route config needs at least one (tcpshift down removes every service)"

func TestNoServices(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty file", "", "routes.yaml: " + noServices},
		{"only comments", "# nothing here\n\n# at all\n", "routes.yaml: " + noServices},
		{"empty list", "services: []\n", "routes.yaml:1: " + noServices},
		{"null", "services:\n", "routes.yaml:1: " + noServices},
		{"null after comments", "# head\n\nservices: ~\n", "routes.yaml:3: " + noServices},
		{"empty block list on its own line", "services:\n  []\n", "routes.yaml:2: " + noServices},
		{"null document", "~\n", "routes.yaml:1: " + noServices},
		{"empty mapping", "{}\n", "routes.yaml:1: " + noServices},
		// Other problems that come first still come first.
		{"unknown field first", "colour: red\n", `routes.yaml:1: colour: unknown field "colour"`},
		{"services of the wrong type", "services: {}\n", "routes.yaml:1: services: expected a sequence, got a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { parseError(t, tt.yaml, tt.want) })
	}

	// Load and LoadReader say the same about an empty file.
	path := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	wantError(t, err, path+": "+noServices)
	_, err = LoadReader("stdin", strings.NewReader("services: []\n"))
	wantError(t, err, "stdin:1: "+noServices)
}

// sparseFile creates a file of size bytes that takes no space on disk.
func sparseFile(t *testing.T, name string, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileSize(t *testing.T) {
	if MaxFileSize != 16<<20 {
		t.Fatalf("MaxFileSize = %d", MaxFileSize)
	}
	t.Run("Load stats a big file", func(t *testing.T) {
		// The exact size in the message comes from stat: reading stops
		// at MaxFileSize+1 bytes and would only know "larger than".
		path := sparseFile(t, "big.yaml", 200<<20)
		_, err := Load(path)
		wantError(t, err, path+": 200.0 MiB is over the 16.0 MiB limit for a route config")
		path = sparseFile(t, "huge.yaml", 1<<40)
		_, err = Load(path)
		wantError(t, err, path+": 1048576.0 MiB is over the 16.0 MiB limit for a route config")
	})
	t.Run("one byte over rounds up", func(t *testing.T) {
		path := sparseFile(t, "over.yaml", MaxFileSize+1)
		_, err := Load(path)
		wantError(t, err, path+": 16.1 MiB is over the 16.0 MiB limit for a route config")
	})
	t.Run("exactly the limit", func(t *testing.T) {
		data := []byte(example)
		data = append(data, '#')
		data = append(data, strings.Repeat("x", MaxFileSize-len(data)-1)...)
		data = append(data, '\n')
		if len(data) != MaxFileSize {
			t.Fatalf("%d bytes", len(data))
		}
		path := filepath.Join(t.TempDir(), "full.yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if cfg, err := Load(path); err != nil || len(cfg.Services) != 1 {
			t.Fatalf("Load = %v, %v", cfg, err)
		}
		if cfg, err := LoadReader("stdin", strings.NewReader(string(data))); err != nil || len(cfg.Services) != 1 || cfg.Path != "stdin" {
			t.Fatalf("LoadReader = %v, %v", cfg, err)
		}
		if _, err := Parse("routes.yaml", data); err != nil {
			t.Fatal(err)
		}
		data = append(data, '\n')
		_, err := Parse("routes.yaml", data)
		wantError(t, err, "routes.yaml: 16.1 MiB is over the 16.0 MiB limit for a route config")
	})
	t.Run("Parse", func(t *testing.T) {
		_, err := Parse("routes.yaml", make([]byte, 17<<20))
		wantError(t, err, "routes.yaml: 17.0 MiB is over the 16.0 MiB limit for a route config")
	})
	t.Run("LoadReader reads at most MaxFileSize+1 bytes", func(t *testing.T) {
		r := &endless{}
		_, err := LoadReader("stdin", r)
		wantError(t, err, "stdin: larger than the 16.0 MiB limit for a route config")
		if r.n != MaxFileSize+1 {
			t.Errorf("read %d bytes, want %d", r.n, MaxFileSize+1)
		}
	})
	t.Run("LoadReader read error", func(t *testing.T) {
		_, err := LoadReader("stdin", io.MultiReader(strings.NewReader("services:\n"), failing{}))
		if err == nil || err.Error() != "stdin: boom" {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("Load of a pipe that does not end", func(t *testing.T) {
		// A fifo has no size to stat; Load must stop reading anyway.
		path := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Skip("mkfifo:", err)
		}
		done := make(chan error, 1)
		go func() {
			w, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				done <- err
				return
			}
			defer w.Close()
			buf := make([]byte, 64<<10)
			for {
				if _, err := w.Write(buf); err != nil {
					done <- nil // the reader went away
					return
				}
			}
		}()
		_, err := Load(path)
		wantError(t, err, path+": larger than the 16.0 MiB limit for a route config")
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("writer still blocked: Load kept the pipe open")
		}
	})
}

// endless is a reader of spaces that never ends; n counts the bytes read.
type endless struct{ n int }

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += len(p)
	return len(p), nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestAddresses(t *testing.T) {
	const (
		frontend = "a frontend must be a unicast address of this host or a virtual IP"
		backend  = "an endpoint must be a unicast address of a backend"
	)
	listen := func(addr string) string {
		return lines("services:", "- name: a", "  listen: '"+addr+"'", svcRest)
	}
	endpoint := func(addr string) string {
		return lines("services:", "- name: a", "  listen: 127.0.0.1:9000", "  subsets:", "    v1:", "      endpoints:", "      - '"+addr+"'")
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"listen multicast", listen("224.0.0.1:9000"),
			`routes.yaml:3: services[0].listen: invalid address "224.0.0.1:9000": 224.0.0.1 is a multicast address; ` + frontend},
		{"listen ipv6 link-local multicast", listen("[ff02::1]:9000"),
			`routes.yaml:3: services[0].listen: invalid address "[ff02::1]:9000": ff02::1 is a multicast address; ` + frontend},
		{"listen organisation-local multicast", listen("239.255.0.1:9000"),
			`routes.yaml:3: services[0].listen: invalid address "239.255.0.1:9000": 239.255.0.1 is a multicast address; ` + frontend},
		{"listen site-local ipv6 multicast", listen("[ff05::1:3]:547"),
			`routes.yaml:3: services[0].listen: invalid address "[ff05::1:3]:547": ff05::1:3 is a multicast address; ` + frontend},
		{"listen mapped multicast", listen("[::ffff:224.0.0.251]:5353"),
			`routes.yaml:3: services[0].listen: invalid address "[::ffff:224.0.0.251]:5353": 224.0.0.251 is a multicast address; ` + frontend},
		{"listen limited broadcast", listen("255.255.255.255:9000"),
			`routes.yaml:3: services[0].listen: invalid address "255.255.255.255:9000": 255.255.255.255 is the limited broadcast address; ` + frontend},
		{"listen ipv4 wildcard port 0", listen("0.0.0.0:0"),
			`routes.yaml:3: services[0].listen: invalid address "0.0.0.0:0": port 0 is out of range 1-65535`},
		{"listen ipv6 wildcard port 0", listen("[::]:0"),
			`routes.yaml:3: services[0].listen: invalid address "[::]:0": port 0 is out of range 1-65535`},
		{"listen port 0", listen("10.96.0.10:0"),
			`routes.yaml:3: services[0].listen: invalid address "10.96.0.10:0": port 0 is out of range 1-65535`},
		{"endpoint multicast", endpoint("224.0.0.1:9001"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "224.0.0.1:9001": 224.0.0.1 is a multicast address; ` + backend},
		{"endpoint ipv6 multicast", endpoint("[ff02::1]:9001"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "[ff02::1]:9001": ff02::1 is a multicast address; ` + backend},
		{"endpoint limited broadcast", endpoint("255.255.255.255:9001"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "255.255.255.255:9001": 255.255.255.255 is the limited broadcast address; ` + backend},
		{"endpoint unspecified", endpoint("0.0.0.0:9001"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "0.0.0.0:9001": the unspecified address 0.0.0.0 is only allowed for listen`},
		{"endpoint ipv6 unspecified", endpoint("[::]:9001"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "[::]:9001": the unspecified address :: is only allowed for listen`},
		{"endpoint port 0", endpoint("10.0.0.1:0"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "10.0.0.1:0": port 0 is out of range 1-65535`},
		{"endpoint ipv6 port 0", endpoint("[fd00::1]:0"),
			`routes.yaml:7: services[0].subsets.v1.endpoints[0]: invalid address "[fd00::1]:0": port 0 is out of range 1-65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { parseError(t, tt.yaml, tt.want) })
	}

	// Unicast addresses of every kind stay allowed.
	for _, addr := range []string{"10.96.0.10:9000", "192.168.1.255:9000", "169.254.1.1:9000", "[fe80::1]:9000", "[fd00::10]:9000", "0.0.0.0:1", "[::]:65535"} {
		if _, err := Parse("routes.yaml", []byte(listen(addr))); err != nil {
			t.Errorf("listen %s: %v", addr, err)
		}
		if addr == "0.0.0.0:1" || addr == "[::]:65535" {
			continue
		}
		if _, err := Parse("routes.yaml", []byte(endpoint(addr))); err != nil {
			t.Errorf("endpoint %s: %v", addr, err)
		}
	}
}

func TestClaim(t *testing.T) {
	cfg, err := Parse("routes.yaml", []byte(lines(
		"services:",
		"- name: a",
		"  listen: 10.96.0.10:9000",
		"  mode: lookup",
		"  claim: true",
		svcRest,
		"- name: b",
		"  listen: 10.96.0.11:9000",
		"  claim: false",
		svcRest,
		"- name: c",
		"  listen: 10.96.0.12:9000",
		svcRest,
	)))
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, s := range cfg.Services {
		got = append(got, s.Claim)
	}
	if want := []bool{true, false, false}; !reflect.DeepEqual(got, want) {
		t.Errorf("claim = %v, want %v", got, want)
	}
	parseError(t, lines("services:", "- name: a", "  listen: 10.96.0.10:9000", "  claim: yes", svcRest),
		`routes.yaml:4: services[0].claim: invalid value "yes" (allowed: true, false)`)
	parseError(t, lines("services:", "- name: a", "  listen: 10.96.0.10:9000", "  claim: [true]", svcRest),
		`routes.yaml:4: services[0].claim: expected true or false, got a sequence`)
	parseError(t, lines("services:", "- name: a", "  listen: 10.96.0.10:9000", "  claim: true", svcRest, "  claim: false"),
		`routes.yaml:6: services[0].claim: duplicate key "claim" (first at line 4)`)
}

func TestStatusIgnored(t *testing.T) {
	plain := lines(
		"services:",
		"- name: a",
		"  listen: 127.0.0.1:9000",
		"  subsets: {v1: {endpoints: [10.0.0.1:1]}, v2: {endpoints: [10.0.0.2:1]}}",
		"  route: [{subset: v1, weight: 3}]",
		"- name: b",
		"  listen: 127.0.0.1:9001",
		svcRest,
	)
	want, err := Parse("routes.yaml", []byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	statuses := []string{
		"  status: 7",
		"  status:",
		"  status: {}",
		"  status: [1, two, {three: 3}]",
		"  status: |\n    free text\n    over lines",
		// Anything at all, field names of the config included, with
		// values the config would refuse.
		"  status:\n    mode: lookup\n    reason: every endpoint is a local listener\n    listen: not an address\n" +
			"    subsets:\n      v1: {weight: -1, endpoints: [{address: 10.0.0.1:1, health: up, active: 3}]}\n" +
			"    refused: 0\n    anchors: &x [1, 2]\n    again: *x\n    ? [complex, key]\n    : value",
	}
	for _, st := range statuses {
		// The status key goes before, between and after the other fields.
		for _, text := range []string{
			strings.Replace(plain, "  route:", st+"\n  route:", 1),
			strings.Replace(plain, "  subsets:", st+"\n  subsets:", 1),
			plain + st + "\n",
		} {
			got, err := Parse("routes.yaml", []byte(text))
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			stripLines(got)
			w := *want
			ws := append([]Service(nil), want.Services...)
			w.Services = ws
			stripLines(&w)
			if !reflect.DeepEqual(got, &w) {
				t.Fatalf("status changed the config:\n%s\ngot  %+v\nwant %+v", text, got, &w)
			}
		}
	}
	parseError(t, plain+"  status: 1\n  status: 2\n", `routes.yaml:10: services[1].status: duplicate key "status" (first at line 9)`)
	parseError(t, plain+"status: {}\n", `routes.yaml:9: status: unknown field "status"`)
}

// endpointsYAML writes one service per element of counts, with a subset per
// element of that, holding that many endpoints, one per line. Every service
// lists the same addresses. It returns the file and the line of every
// endpoint by field.
func endpointsYAML(counts [][]int) (string, map[string]int) {
	var b strings.Builder
	at := map[string]int{}
	line := 1
	w := func(format string, args ...any) {
		fmt.Fprintf(&b, format+"\n", args...)
		line++
	}
	w("services:")
	for i, subsets := range counts {
		w("- name: s%d", i)
		w("  listen: 127.0.0.1:%d", 1000+i)
		w("  subsets:")
		for j, n := range subsets {
			w("    v%d:", j)
			w("      endpoints:")
			for k := range n {
				at[fmt.Sprintf("services[%d].subsets.v%d.endpoints[%d]", i, j, k)] = line
				w("      - 10.%d.%d.%d:80", j, k/250, k%250+1)
			}
		}
	}
	return b.String(), at
}

// full is a service with MaxSubsets subsets of MaxEndpoints endpoints.
func full() []int {
	s := make([]int, MaxSubsets)
	for i := range s {
		s[i] = MaxEndpoints
	}
	return s
}

func TestTotalEndpoints(t *testing.T) {
	if MaxTotalEndpoints != 131072 {
		t.Fatalf("MaxTotalEndpoints = %d", MaxTotalEndpoints)
	}
	// 8 full services hold 131072 endpoints, the same 16384 addresses in
	// each: an address in two services counts twice.
	counts := make([][]int, 8)
	for i := range counts {
		counts[i] = full()
	}
	text, _ := endpointsYAML(counts)
	cfg, err := Parse("routes.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, s := range cfg.Services {
		for _, sub := range s.Subsets {
			total += len(sub.Endpoints)
		}
	}
	if total != MaxTotalEndpoints || cfg.Services[0].Subsets[0].Endpoints[0] != cfg.Services[7].Subsets[0].Endpoints[0] {
		t.Fatalf("%d endpoints", total)
	}

	// One more endpoint, anywhere, is refused at that endpoint.
	text, at := endpointsYAML(append(counts, []int{1}))
	parseError(t, text, fmt.Sprintf("routes.yaml:%d: services[8].subsets.v0.endpoints[0]: endpoint 131073 of the file: at most 131072 endpoints per network namespace (all services together)",
		at["services[8].subsets.v0.endpoints[0]"]))

	// 7 × 16384 + 15 × 1024 + 1014 + 4 + 6 endpoints come before
	// services[8].subsets.v1.endpoints[6].
	counts = counts[:7]
	last := full()[:15]
	counts = append(counts, append(last, 1014), []int{4, 16})
	text, at = endpointsYAML(counts)
	field := "services[8].subsets.v1.endpoints[6]"
	parseError(t, text, fmt.Sprintf("routes.yaml:%d: %s: endpoint 131073 of the file: at most 131072 endpoints per network namespace (all services together)", at[field], field))

	// The same services through an alias count once per use.
	aliased := lines(
		"services:",
		"- name: s0",
		"  listen: 127.0.0.1:1000",
		"  subsets: &subs",
	)
	for j := range MaxSubsets {
		eps := make([]string, MaxEndpoints)
		for k := range eps {
			eps[k] = fmt.Sprintf("10.%d.%d.%d:80", j, k/250, k%250+1)
		}
		aliased += fmt.Sprintf("    v%d: {endpoints: [%s]}\n", j, strings.Join(eps, ", "))
	}
	for i := 1; i < 8; i++ {
		aliased += fmt.Sprintf("- {name: s%d, listen: 127.0.0.1:%d, subsets: *subs}\n", i, 1000+i)
	}
	if _, err := Parse("routes.yaml", []byte(aliased)); err != nil {
		t.Fatal(err)
	}
	aliased += "- {name: s8, listen: 127.0.0.1:1008, subsets: *subs}\n"
	// The endpoint past the limit is the anchored node's first endpoint.
	parseError(t, aliased, "routes.yaml:5: services[8].subsets.v0.endpoints[0]: endpoint 131073 of the file: at most 131072 endpoints per network namespace (all services together)")
}

func TestConnectFamilies(t *testing.T) {
	svc := func(listen, mode string, eps ...string) string {
		return lines(
			"services:",
			"- name: a",
			"  listen: '"+listen+"'",
			"  mode: "+mode,
			"  subsets:",
			"    v1: {endpoints: ['10.0.0.1:9001']}",
			"    v2:",
			"      endpoints:",
			"      - '"+strings.Join(eps, "'\n      - '")+"'",
		)
	}
	parseError(t, svc("10.96.0.10:9000", "connect", "[fd00::2]:9001"),
		"routes.yaml:9: services[0].subsets.v2.endpoints[0]: connect mode: IPv4 frontend 10.96.0.10:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [fd00::2]:9001")
	parseError(t, svc("0.0.0.0:9000", "connect", "10.0.0.2:9001", "[::1]:9001"),
		"routes.yaml:10: services[0].subsets.v2.endpoints[1]: connect mode: IPv4 frontend 0.0.0.0:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [::1]:9001")
	parseError(t, svc("[::ffff:10.96.0.10]:9000", "connect", "[fd00::2]:9001"),
		"routes.yaml:9: services[0].subsets.v2.endpoints[0]: connect mode: IPv4 frontend 10.96.0.10:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [fd00::2]:9001")
	// mode may come after the subsets.
	parseError(t, lines(
		"services:",
		"- name: a",
		"  listen: 10.96.0.10:9000",
		"  subsets:",
		"    v1: {endpoints: ['[fd00::1]:9001', '[fd00::2]:9001']}",
		"  mode: connect",
	), "routes.yaml:5: services[0].subsets.v1.endpoints[0]: connect mode: IPv4 frontend 10.96.0.10:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [fd00::1]:9001")
	// A problem earlier in the file still comes first.
	parseError(t, lines(
		"services:",
		"- name: a",
		"  listen: 10.96.0.10:9000",
		"  policy: fast",
		"  mode: connect",
		"  subsets: {v1: {endpoints: ['[fd00::1]:9001']}}",
	), `routes.yaml:4: services[0].policy: invalid policy "fast" (allowed: roundrobin, random)`)

	for _, ok := range []string{
		svc("[fd00::10]:9000", "connect", "10.0.0.2:9001", "[fd00::2]:9001"), // dual-stack sockets reach IPv4
		svc("[::]:9000", "connect", "10.0.0.2:9001"),
		svc("10.96.0.10:9000", "connect", "10.0.0.2:9001", "[::ffff:10.0.0.3]:9001"), // mapped is IPv4
		svc("10.96.0.10:9000", "auto", "[fd00::2]:9001"),                             // the loader decides
		svc("10.96.0.10:9000", "lookup", "[fd00::2]:9001"),
		svc("10.96.0.10:9000", "proxy", "[fd00::2]:9001"),
	} {
		if _, err := Parse("routes.yaml", []byte(ok)); err != nil {
			t.Errorf("%v\n%s", err, ok)
		}
	}
}

func TestConnectReaches(t *testing.T) {
	tests := []struct {
		frontend, endpoint, want string
	}{
		{"10.96.0.10:9000", "10.0.0.1:9001", ""},
		{"10.96.0.10:9000", "[fd00::2]:9001", "connect mode: IPv4 frontend 10.96.0.10:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [fd00::2]:9001"},
		{"0.0.0.0:9000", "[::1]:9001", "connect mode: IPv4 frontend 0.0.0.0:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [::1]:9001"},
		{"[::ffff:10.96.0.10]:9000", "[fd00::2]:9001", "connect mode: IPv4 frontend 10.96.0.10:9000 is dialled from IPv4 sockets, which cannot reach IPv6 endpoint [fd00::2]:9001"},
		{"10.96.0.10:9000", "[::ffff:10.0.0.1]:9001", ""},
		{"[fd00::10]:9000", "10.0.0.1:9001", ""},
		{"[::]:9000", "10.0.0.1:9001", ""},
		{"[fd00::10]:9000", "[fd00::2]:9001", ""},
	}
	for _, tt := range tests {
		err := ConnectReaches(netip.MustParseAddrPort(tt.frontend), netip.MustParseAddrPort(tt.endpoint))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ConnectReaches(%s, %s) = %q, want %q", tt.frontend, tt.endpoint, got, tt.want)
		}
	}
}

// stripLines clears what Marshal does not keep: Path and the Line fields.
func stripLines(c *Config) {
	c.Path = ""
	for i := range c.Services {
		s := &c.Services[i]
		s.Line = 0
		subs := append([]Subset(nil), s.Subsets...)
		for j := range subs {
			subs[j].Line = 0
		}
		s.Subsets = subs
	}
}
