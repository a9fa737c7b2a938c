package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// testdata/stream.json was recorded with `go test -count=1 -json ./...` in a
// scratch module: package good (a pass and a test with two passing
// subtests), bad (a pass, a t.Fatalf, a t.Skip, and a test whose subtest
// fails), broken (does not compile) and notests.
func TestRecordedStream(t *testing.T) {
	in, err := os.ReadFile("testdata/stream.json")
	if err != nil {
		t.Fatal(err)
	}
	var out, log bytes.Buffer
	res, err := summarize(bytes.NewReader(in), &out, &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.ok() {
		t.Errorf("ok() = true for a run with failures, a skip and a broken build")
	}
	if res.passed != 6 || res.failed != 3 || res.skipped != 1 || res.failedPackages != 2 || len(res.brokenBuilds) != 1 {
		t.Errorf("result %+v, want 6 passed, 3 failed (TestSubFail and its subtest both count), 1 skipped, 2 failed packages, 1 broken build", res)
	}

	text := out.String()
	for _, want := range []string{
		// The failing test's own messages, not just its name.
		"    bad_test.go:9: 1000 connections: map[one:799 two:201], want 800/200\n--- FAIL: TestFail",
		"    bad_test.go:12: needs root: CAP_BPF\n--- SKIP: TestSkip",
		"    bad_test.go:16: status -o json: no key \"weight\"\n--- FAIL: TestSubFail/broken",
		"FAIL example.com/fx/bad 0.0s\n",
		"broken/broken.go:3:23: cannot use \"x\" (untyped string constant) as int value in return statement\nFAIL example.com/fx/broken [build failed]\n",
		"ok   example.com/fx/good 0.0s\n",
		"?    example.com/fx/notests [no test files]\n",
		"1 builds failed: example.com/fx/broken [example.com/fx/broken.test]\n",
		"skipped tests fail the run\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	// Passing tests stay out of the summary; they are in the log.
	for _, unwanted := range []string{"TestSubFail/ok", "good_test.go:5: all fine", "--- PASS"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("summary shows passing output %q:\n%s", unwanted, text)
		}
	}
	if lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n"); lines[len(lines)-1] != "6 passed, 3 failed, 1 skipped" {
		t.Errorf("last line %q, want the count line", lines[len(lines)-1])
	}
	if !strings.Contains(log.String(), "    good_test.go:5: all fine\n--- PASS: TestPass") ||
		!strings.Contains(log.String(), "--- PASS: TestSubFail/ok") ||
		!strings.Contains(log.String(), "broken/broken.go:3:23") {
		t.Errorf("log is not the full verbose output:\n%s", log.String())
	}
}

func TestAllPassIsOK(t *testing.T) {
	stream := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0}
{"Action":"pass","Package":"p","Elapsed":3.14}
`
	var out bytes.Buffer
	res, err := summarize(strings.NewReader(stream), &out, &bytes.Buffer{})
	if err != nil || !res.ok() {
		t.Fatalf("ok() = %v, %v; want true", res.ok(), err)
	}
	if want := "ok   p 3.1s\n1 passed, 0 failed, 0 skipped\n"; out.String() != want {
		t.Errorf("summary %q, want %q", out.String(), want)
	}
}

// A test binary that dies (panic, -timeout) or a stream cut short leaves
// tests with no result: they count as failed and their output is shown.
func TestUnfinishedTestsFail(t *testing.T) {
	stream := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"waiting for drain\n"}
{"Action":"output","Package":"p","Output":"panic: test timed out after 10m0s\n"}
{"Action":"fail","Package":"p","Elapsed":600}
{"Action":"start","Package":"q"}
{"Action":"run","Package":"q","Test":"TestCut"}
not json: go test was killed
`
	var out bytes.Buffer
	res, err := summarize(strings.NewReader(stream), &out, &bytes.Buffer{})
	if err != nil || res.ok() || res.failed != 2 || res.failedPackages != 2 {
		t.Fatalf("result %+v, %v; want 2 failed tests in 2 failed packages", res, err)
	}
	for _, want := range []string{"waiting for drain\n", "panic: test timed out after 10m0s\nFAIL p 600.0s\n", "not json: go test was killed\n", "FAIL q 0.0s\n", "0 passed, 2 failed, 0 skipped\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
