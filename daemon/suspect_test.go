package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/internal/inputs"
	"github.com/tcpshift/tcpshift/internal/testenv"
)

// load reads files (name → text) in a directory as run -f DIR does and
// returns their shape.
func load(t *testing.T, dir string, files map[string]string) *shape {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, keep := files[e.Name()]; !keep {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := istio.Load([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, contents, err := readPaths([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	l := &loaded{change: &inputs.Change{Native: in.Native, Put: in.Objects, Exact: true}, in: in, files: contents}
	b, err := l.change.Build(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return shapeOf(l, b.Config)
}

const other = `- name: other
  listen: 127.0.0.101:9000
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`

func TestDrops(t *testing.T) {
	echo := testenv.EchoConfig
	weights := func(v1, v2 string) string {
		return strings.NewReplacer("weight: 80", "weight: "+v1, "weight: 20", "weight: "+v2).Replace(echo)
	}
	for _, tc := range []struct {
		name     string
		old, now map[string]string
		want     []string // service: what, one per service
	}{
		{"weights changed", map[string]string{"r.yaml": echo}, map[string]string{"r.yaml": weights("50", "50")}, nil},
		{"a weight 0 written out", map[string]string{"r.yaml": echo}, map[string]string{"r.yaml": weights("0", "100")}, nil},
		{"cut before route", map[string]string{"r.yaml": echo}, map[string]string{"r.yaml": echo[:strings.Index(echo, "  route:")]},
			[]string{"tcp-echo: the route to v1 (weight 80), the route to v2 (weight 20)"}},
		{"cut in the route", map[string]string{"r.yaml": echo}, map[string]string{"r.yaml": echo[:strings.Index(echo, "  - {subset: v2")]},
			[]string{"tcp-echo: the route to v2 (weight 20)"}},
		{"cut in the subsets", map[string]string{"r.yaml": echo}, map[string]string{"r.yaml": echo[:strings.Index(echo, "    v2:")]},
			[]string{"tcp-echo: the route to v1 (weight 80), subset v2 (weight 20)"}},
		{"a route of weight 0 gone", map[string]string{"r.yaml": weights("0", "100")}, map[string]string{"r.yaml": strings.Replace(weights("0", "100"), "  - {subset: v1, weight: 0}\n", "", 1)},
			nil},
		{"a service cut off", map[string]string{"r.yaml": echo + other}, map[string]string{"r.yaml": echo},
			[]string{"other: the service (subsets v1=1)"}},
		{"a service added", map[string]string{"r.yaml": echo}, map[string]string{"r.yaml": echo + other}, nil},
		{"a file renamed", map[string]string{"r.yaml": echo}, map[string]string{"s.yaml": echo[:strings.Index(echo, "  route:")]}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			old := load(t, dir, tc.old)
			now := load(t, dir, tc.now)
			var got []string
			for _, d := range old.drops(now) {
				got = append(got, d.service+": "+strings.Join(d.what, ", "))
				if d.file == "" {
					t.Errorf("no file named for %s", d.service)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("drops %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDropsOfDerivedService: an Istio VirtualService cut short loses the
// weight of a destination; the object's file is named.
func TestDropsOfDerivedService(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "examples", "istio", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	allV1 := read("tcp-echo-all-v1.yaml")
	gwAndDR := allV1[:strings.LastIndex(allV1, "---")]
	split := gwAndDR + "---\n" + read("tcp-echo-20-v2.yaml")
	cut := split[:strings.LastIndex(split, "    - destination:")]
	dir := t.TempDir()
	old := load(t, dir, map[string]string{"workloads.yaml": read("workloads.yaml"), "task.yaml": split})
	now := load(t, dir, map[string]string{"workloads.yaml": read("workloads.yaml"), "task.yaml": cut})
	drops := old.drops(now)
	if len(drops) != 1 || !strings.Contains(drops[0].file, filepath.Join(dir, "task.yaml")) ||
		!reflect.DeepEqual(drops[0].what, []string{"the route to v2 (weight 20)"}) {
		t.Fatalf("drops %+v, want the route to v2 of one service, from task.yaml", drops)
	}
	// The whole task file removed: its service goes, no cut.
	gone := load(t, dir, map[string]string{"workloads.yaml": read("workloads.yaml")})
	if drops := old.drops(gone); len(drops) != 0 {
		t.Fatalf("drops %+v with the task file removed, want none", drops)
	}
}
