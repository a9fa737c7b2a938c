package test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// tcpshift run -f DIR makes the stored objects exactly its files' even
// when those applied before make no service: the CLI's workloads.yaml
// (a ServiceEntry and two WorkloadEntries, no VirtualService yet) is
// replaced by the directory's lone ServiceEntry. The objects were not read
// while no service was in force, so they stayed (issue 26 finding 2).
func TestDaemonReplacesObjectsThatMakeNoService(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	in, err := istio.Load([]string{filepath.Join("..", "examples", "istio", "workloads.yaml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := &inputs.Change{Put: in.Objects}
	if _, err := tg.Apply(ch, loader.ApplyOptions{KeepOverrides: true}); err != nil {
		t.Fatal(err)
	}
	stored := func() []string {
		t.Helper()
		var keys []string
		err := tg.Read(func(set *maps.Set) error {
			objs, err := set.Objects()
			for _, o := range objs {
				keys = append(keys, istio.Key(o.Key).String())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if got, want := stored(), []string{"ServiceEntry default/tcp-echo", "WorkloadEntry default/tcp-echo-v1", "WorkloadEntry default/tcp-echo-v2"}; !slices.Equal(got, want) {
		t.Fatalf("stored after the CLI's apply: %q, want %q", got, want)
	}

	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "other.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: other
spec:
  hosts: [other]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {tcp: 9001}}
`)
	startDaemon(t, env, dir, "")
	if got, want := stored(), []string{"ServiceEntry default/other"}; !slices.Equal(got, want) {
		t.Fatalf("stored once tcpshift run follows the directory: %q, want only its files' %q", got, want)
	}
}
