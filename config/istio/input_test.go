package istio

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The services: documents of one file are one route config, among objects
// or not; a service two of them name is refused at the second. Another
// file's services: are another route config, refused.
func TestLoadRouteConfigDocuments(t *testing.T) {
	const a = "services:\n- name: a\n  listen: 127.0.0.1:9000\n  subsets: {v1: {endpoints: [10.0.0.1:1]}}\n"
	const b = "services:\n- name: b\n  listen: 127.0.0.1:9001\n  subsets: {v1: {endpoints: [10.0.0.2:1]}}\n"
	const we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nspec: {address: 127.0.0.1}\n"
	path := writeFile(t, "routes.yaml", a+"---\n"+we+"---\n"+b)
	in, err := Load([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Native == nil || len(in.Native.Services) != 2 || in.Native.Services[0].Name != "a" || in.Native.Services[1].Name != "b" ||
		in.Native.Services[1].Line != 12 || len(in.Objects) != 1 || in.Native.Path != path {
		t.Fatalf("input %+v, native %+v", in, in.Native)
	}

	dup := writeFile(t, "dup.yaml", a+"---\n"+we+"---\n"+a)
	if _, err := Load([]string{dup}, nil); err == nil || err.Error() != dup+`:12: services[0].name: duplicate service "a" (first at line 2)` {
		t.Fatalf("a service in two documents: %v", err)
	}

	other := writeFile(t, "other.yaml", b)
	want := other + `:1: services: a second tcpshift route config (the first is ` + path + `): give the services in one file`
	if _, err := Load([]string{path, other}, nil); err == nil || err.Error() != want {
		t.Fatalf("two files of services:\ngot  %v\nwant %s", err, want)
	}
}
