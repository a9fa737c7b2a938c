package plan_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

// The golden cases (testdata/golden/*.txtar) go from inputs to the plan, a
// step at a time; see testdata/golden/README.md for their files. go test
// -run TestGolden -update rewrites each step's want with what the plan
// gives, to review with git diff.
var update = flag.Bool("update", false, "rewrite the want files of testdata/golden/*.txtar with the plans made")

func TestGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/golden/*.txtar")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, path := range paths {
		// Absolute: each case runs in a directory of its own.
		if path, err = filepath.Abs(path); err != nil {
			t.Fatal(err)
		}
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			runCase(t, path)
		})
	}
}

// step is one numbered step of a case: its files by name (without the
// "N/" prefix) and where its want file is in the archive (-1: none yet).
type step struct {
	name  string
	files map[string]string
	order []string
	want  int
}

// steps groups an archive's files by step, in the order steps first appear.
func steps(ar *txtar.Archive) ([]*step, error) {
	var out []*step
	byName := map[string]*step{}
	for i, f := range ar.Files {
		name, file, ok := strings.Cut(f.Name, "/")
		if !ok {
			return nil, fmt.Errorf("file %s: want STEP/FILE", f.Name)
		}
		s := byName[name]
		if s == nil {
			s = &step{name: name, files: map[string]string{}, want: -1}
			byName[name] = s
			out = append(out, s)
		}
		if file == "want" {
			s.want = i
			continue
		}
		s.files[file] = string(f.Data)
		s.order = append(s.order, file)
	}
	return out, nil
}

// runCase plays a case's steps over one world and compares (or, with
// -update, rewrites) each step's plan.
func runCase(t *testing.T, path string) {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := steps(ar)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	rewrite := false
	for _, s := range ss {
		got := w.play(s)
		if s.want >= 0 && string(ar.Files[s.want].Data) == got {
			continue
		}
		switch {
		case *update && s.want >= 0:
			ar.Files[s.want].Data = []byte(got)
		case *update:
			ar.Files = append(ar.Files, txtar.File{Name: s.name + "/want", Data: []byte(got)})
		case s.want < 0:
			t.Errorf("step %s has no want; it plans:\n%s", s.name, got)
			continue
		default:
			t.Errorf("step %s plans otherwise (- want, + got):\n%s", s.name, lineDiff(string(ar.Files[s.want].Data), got))
			continue
		}
		rewrite = true
	}
	if rewrite {
		if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// lineDiff marks the lines of want and got that differ, position by
// position: enough to see what changed in a short plan.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(wl), len(gl)) {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w == g {
			fmt.Fprintf(&b, "  %s\n", w)
			continue
		}
		if i < len(wl) {
			fmt.Fprintf(&b, "- %s\n", w)
		}
		if i < len(gl) {
			fmt.Fprintf(&b, "+ %s\n", g)
		}
	}
	return b.String()
}
