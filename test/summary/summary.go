package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// event is a test2json TestEvent, or a BuildEvent (ImportPath set,
// Action build-output or build-fail), as `go test -json` interleaves them.
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
	ImportPath  string
}

// result counts tests: top-level tests and subtests alike, each once (a
// failing subtest fails its parent too, so both count as failed).
type result struct {
	passed, failed, skipped int
	failedPackages          int // test binaries that failed, builds included
	brokenBuilds            []string
}

// ok is false for any failure, any skip and any broken build.
func (r result) ok() bool {
	return r.failed == 0 && r.skipped == 0 && r.failedPackages == 0 && len(r.brokenBuilds) == 0
}

// pkg is a package whose test binary is running.
type pkg struct {
	lines   []line            // its output, in order
	results map[string]string // test → pass, fail or skip; "" while running
}

type line struct{ test, text string }

type summarizer struct {
	out, log io.Writer
	pkgs     map[string]*pkg
	builds   map[string]string // build output by package ID (ImportPath)
	broken   map[string]bool   // package IDs whose build failed
	shown    map[string]bool   // build outputs already printed
	res      result
}

// summarize reads the stream from in to its end: the plain log to log, the
// summary to out.
func summarize(in io.Reader, out, log io.Writer) (result, error) {
	s := &summarizer{out: out, log: log, pkgs: map[string]*pkg{},
		builds: map[string]string{}, broken: map[string]bool{}, shown: map[string]bool{}}
	r := bufio.NewReader(in)
	for {
		text, err := r.ReadString('\n')
		if text != "" {
			s.handle(text)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s.res, err
		}
	}
	s.finish()
	return s.res, nil
}

func (s *summarizer) handle(text string) {
	var e event
	if err := json.Unmarshal([]byte(text), &e); err != nil || e.Action == "" {
		// The go command writes serious early errors as plain text.
		io.WriteString(s.log, text)
		io.WriteString(s.out, text)
		return
	}
	io.WriteString(s.log, e.Output)
	switch e.Action {
	case "build-output":
		s.builds[e.ImportPath] += e.Output
	case "build-fail":
		s.broken[e.ImportPath] = true
	case "start":
		s.pkgs[e.Package] = &pkg{results: map[string]string{}}
	default:
		p := s.pkgs[e.Package]
		if p == nil { // no start event: tolerate it
			p = &pkg{results: map[string]string{}}
			s.pkgs[e.Package] = p
		}
		switch {
		case e.Action == "output":
			p.lines = append(p.lines, line{e.Test, e.Output})
		case e.Test == "":
			if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
				s.done(e, p)
			}
		case e.Action == "run":
			p.results[e.Test] = ""
		case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
			p.results[e.Test] = e.Action
			s.count(e.Action)
		}
	}
}

func (s *summarizer) count(action string) {
	switch action {
	case "pass":
		s.res.passed++
	case "fail":
		s.res.failed++
	case "skip":
		s.res.skipped++
	}
}

// done reports a package whose test binary ended.
func (s *summarizer) done(e event, p *pkg) {
	delete(s.pkgs, e.Package)
	for name, r := range p.results {
		if r == "" { // still running when the binary died (panic, timeout)
			p.results[name] = "fail"
			s.count("fail")
		}
	}
	for _, l := range p.lines {
		if r := p.results[l.test]; r == "fail" || r == "skip" {
			io.WriteString(s.out, l.text)
		}
	}
	switch {
	case e.Action == "pass":
		fmt.Fprintf(s.out, "ok   %s %.1fs\n", e.Package, e.Elapsed)
	case e.Action == "skip":
		fmt.Fprintf(s.out, "?    %s [no test files]\n", e.Package)
	case e.FailedBuild != "":
		s.showBuild(e.FailedBuild)
		s.res.failedPackages++
		fmt.Fprintf(s.out, "FAIL %s [build failed]\n", e.Package)
	default:
		// Output outside any test: a panic in TestMain or init, a timeout.
		for _, l := range p.lines {
			if l.test == "" && !isResultLine(l.text, e.Package) {
				io.WriteString(s.out, l.text)
			}
		}
		s.res.failedPackages++
		fmt.Fprintf(s.out, "FAIL %s %.1fs\n", e.Package, e.Elapsed)
	}
}

// isResultLine says whether text is go test's own PASS/FAIL/ok line, which
// the summary's package line replaces.
func isResultLine(text, pkg string) bool {
	t := strings.TrimSuffix(text, "\n")
	return t == "PASS" || t == "FAIL" || strings.HasPrefix(t, "FAIL\t"+pkg) || strings.HasPrefix(t, "ok  \t"+pkg)
}

// showBuild prints a package's compiler output once, however many test
// binaries it broke.
func (s *summarizer) showBuild(id string) {
	if s.shown[id] {
		return
	}
	s.shown[id] = true
	s.res.brokenBuilds = append(s.res.brokenBuilds, id)
	io.WriteString(s.out, s.builds[id])
}

// finish reports what never finished and prints the count line.
func (s *summarizer) finish() {
	var ids []string
	for id := range s.broken {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.showBuild(id) // a failed build no test binary reported
	}
	var running []string
	for name := range s.pkgs {
		running = append(running, name)
	}
	sort.Strings(running)
	for _, name := range running { // the stream ended mid-package: go test was killed
		s.done(event{Action: "fail", Package: name}, s.pkgs[name])
	}
	if n := len(s.res.brokenBuilds); n > 0 {
		fmt.Fprintf(s.out, "%d builds failed: %s\n", n, strings.Join(s.res.brokenBuilds, ", "))
	}
	if s.res.skipped > 0 {
		fmt.Fprintln(s.out, "skipped tests fail the run")
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.res.passed, s.res.failed, s.res.skipped)
}
