package main

// Tests of the command line itself: none of them needs the kernel.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/bpf"
)

// TestMain lets a test run this binary as tcpshift itself
// (TCPSHIFT_TEST_CLI=1), for what needs a process: main's exit status and
// stderr, and a shell driving the completion script.
func TestMain(m *testing.M) {
	if os.Getenv("TCPSHIFT_TEST_CLI") == "1" {
		os.Args = append([]string{"tcpshift"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCLI runs tcpshift in-process without the kernel.
func runCLI(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = run(append([]string{"tcpshift"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

var versionRE = regexp.MustCompile(`^tcpshift (\S+) \(commit (\S+), (go\S+), bpf object ([0-9a-f]{12})\)\n$`)

func TestVersion(t *testing.T) {
	out, _, err := runCLI("--version")
	if err != nil {
		t.Fatal(err)
	}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--version printed %q", out)
	}
	if m[1] != releaseVersion(version, buildInfo()) {
		t.Errorf("version %q", m[1])
	}
	if want := commit(buildInfo()); m[2] != want || !regexp.MustCompile(`^(unknown|[0-9a-f]{40}(-dirty)?)$`).MatchString(m[2]) {
		t.Errorf("commit %q, want %q: a git revision or unknown", m[2], want)
	}
	if m[3] != runtime.Version() {
		t.Errorf("go version %q, want %q", m[3], runtime.Version())
	}
	if m[4] != bpf.ObjectTag() {
		t.Errorf("bpf object %q, want %q", m[4], bpf.ObjectTag())
	}
	for _, args := range [][]string{{"version"}, {"-v"}, {"status", "--version"}} {
		if again, _, err := runCLI(args...); again != out || err != nil {
			t.Errorf("%v printed %q (%v), want what --version printed, %q", args, again, err, out)
		}
	}
}

// The tag names the object the binary embeds: the file next to the bindings.
func TestObjectTag(t *testing.T) {
	obj, err := os.ReadFile("../../bpf/tcpshift_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(obj)
	if got, want := bpf.ObjectTag(), hex.EncodeToString(sum[:])[:12]; got != want {
		t.Fatalf("ObjectTag() = %q, want %q", got, want)
	}
}

func TestVersionFallbacks(t *testing.T) {
	stamped := &debug.BuildInfo{
		Main:     debug.Module{Version: "v0.0.0-20260101000000-abc1234def56+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc1234def"}, {Key: "vcs.modified", Value: "true"}},
	}
	for _, tc := range []struct {
		stamped string
		info    *debug.BuildInfo
		version string
		commit  string
	}{
		{"0.3.0-12-gabc1234", stamped, "0.3.0-12-gabc1234", "abc1234def-dirty"}, // make build
		{"", stamped, "v0.0.0-20260101000000-abc1234def56+dirty", "abc1234def-dirty"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}, "dev", "abc"},
		{"", &debug.BuildInfo{}, "dev", "unknown"}, // -buildvcs=false, test binaries
		{"", nil, "dev", "unknown"},
	} {
		if got := releaseVersion(tc.stamped, tc.info); got != tc.version {
			t.Errorf("releaseVersion(%q, %+v) = %q, want %q", tc.stamped, tc.info, got, tc.version)
		}
		if got := commit(tc.info); got != tc.commit {
			t.Errorf("commit(%+v) = %q, want %q", tc.info, got, tc.commit)
		}
	}
}

func TestHelpCommand(t *testing.T) {
	out, _, err := runCLI("help", "apply")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tcpshift apply - make the kernel match", "--file FILE, -f FILE"} {
		if !strings.Contains(out, want) {
			t.Errorf("help apply lacks %q:\n%s", want, out)
		}
	}
	if flag, _, _ := runCLI("apply", "--help"); flag != out {
		t.Errorf("apply --help differs from help apply:\n%s\n---\n%s", flag, out)
	}
	top, _, err := runCLI("help")
	if err != nil || !strings.Contains(top, "COMMANDS:") || !strings.Contains(top, "completion") || !strings.Contains(top, "version") {
		t.Errorf("help: %v\n%s", err, top)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, tc := range []struct{ shell, function, register string }{
		{"bash", "_tcpshift_complete() {", "complete -o bashdefault -o default -F _tcpshift_complete tcpshift\n"},
		{"zsh", "_tcpshift() {", "compdef _tcpshift tcpshift\n"},
	} {
		out, _, err := runCLI("completion", tc.shell)
		if err != nil || !strings.Contains(out, tc.function) || !strings.Contains(out, tc.register) || !strings.Contains(out, completionFlag) {
			t.Errorf("completion %s: %v\n%s", tc.shell, err, out)
		}
		if _, err := exec.LookPath(tc.shell); err == nil {
			if msg, err := exec.Command(tc.shell, "-n", "-c", out).CombinedOutput(); err != nil {
				t.Errorf("completion %s: %s -n: %v %s", tc.shell, tc.shell, err, msg)
			}
		}
	}
	help, _, _ := runCLI("help", "completion")
	if !strings.Contains(help, "source <(tcpshift completion bash)") || !strings.Contains(help, "source <(tcpshift completion zsh)") {
		t.Errorf("completion's help does not say how to install:\n%s", help)
	}
	if _, _, err := runCLI("completion", "fish"); err == nil || err.Error() != "want a shell: completion bash or completion zsh" {
		t.Errorf("completion fish: %v", err)
	}
}

// What the scripts ask for: the words typed, the one being completed last.
func TestCompletionCandidates(t *testing.T) {
	for _, tc := range []struct {
		typed []string
		want  string
	}{
		{[]string{"set-"}, "set-weight\n"},
		{[]string{"st"}, "status\n"},
		{[]string{"--netns", "/run/netns/a", "st"}, "status\n"},
		{[]string{"help", "wa"}, "wait-drained\n"},
		{[]string{"--n"}, "--netns\n"},
		{[]string{"status", "--o"}, "--output\n"},
		{[]string{"status", "tcp-echo", "--ne"}, "--netns\n"}, // global flags work after the command
		{[]string{"apply", "-f", ""}, ""},                     // a file: the shell completes it
		{[]string{"set-weight", "--", ""}, ""},                // never runs set-weight
	} {
		out, _, err := runCLI(append(tc.typed, completionFlag)...)
		if err != nil || out != tc.want {
			t.Errorf("completing %q: %q, %v; want %q", tc.typed, out, err, tc.want)
		}
	}
}

// bash itself, with the script tcpshift prints, completes `tcpshift set-`.
func TestBashCompletes(t *testing.T) {
	script, _, err := runCLI("completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script+`
tcpshift() { TCPSHIFT_TEST_CLI=1 "$SELF" "$@"; }
COMP_WORDS=(tcpshift set-); COMP_CWORD=1; _tcpshift_complete; echo "${COMPREPLY[*]}"
COMP_WORDS=(tcpshift status tcp-echo -); COMP_CWORD=3; _tcpshift_complete; echo "${COMPREPLY[*]}"`)
	cmd.Env = append(os.Environ(), "SELF="+self)
	out, err := cmd.CombinedOutput()
	want := "set-weight\n--output -o --help -h --netns --bpffs --cgroup --version -v\n"
	if err != nil || string(out) != want {
		t.Fatalf("bash completion: %v\n%s\nwant\n%s", err, out, want)
	}
}

func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `unknown command "stauts" (did you mean "status"?); see tcpshift --help`},
		{[]string{"help", "stauts"}, `unknown command "stauts" (did you mean "status"?); see tcpshift --help`},
		{[]string{"--netns", "/run/netns/a", "set-weigth"}, `unknown command "set-weigth" (did you mean "set-weight"?); see tcpshift --help`},
		{[]string{"foo"}, `unknown command "foo"; see tcpshift --help`}, // nothing close
	} {
		out, errOut, err := runCLI(tc.args...)
		if err == nil || err.Error() != tc.want || out != "" || errOut != "" {
			t.Errorf("%v: error %v, stdout %q, stderr %q; want only %q", tc.args, err, out, errOut, tc.want)
		}
	}
}

func TestUnknownFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus", "status"}, "unknown flag --bogus; see tcpshift --help"},
		{[]string{"--netn", "/run/netns/a", "status"}, "unknown flag --netn (did you mean --netns?); see tcpshift --help"},
		{[]string{"status", "tcp-echo", "--outpt", "json"}, "unknown flag --outpt (did you mean --output?); see tcpshift status --help"},
		{[]string{"status", "--nets", "/run/netns/a"}, "unknown flag --nets (did you mean --netns?); see tcpshift status --help"},
		{[]string{"status", "-x"}, "unknown flag -x; see tcpshift status --help"},
		{[]string{"status", "tcp-echo", "--netns"}, "flag --netns needs a value; see tcpshift status --help"},
		{[]string{"status", "-o"}, "flag needs an argument: -o; see tcpshift status --help"},
		{[]string{"demo", "--mod", "proxy"}, "unknown flag --mod (did you mean --mode?); see tcpshift demo --help"},
	} {
		out, errOut, err := runCLI(tc.args...)
		if err == nil || err.Error() != tc.want || out != "" || errOut != "" {
			t.Errorf("%v: error %v, stdout %q, stderr %q; want only %q", tc.args, err, out, errOut, tc.want)
		}
	}
}

// main itself: exit status 1 and exactly one line on stderr.
func TestMainOneLineError(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"stauts"}, {"status", "--outpt", "json"}} {
		cmd := exec.Command(self, args...)
		cmd.Env = append(os.Environ(), "TCPSHIFT_TEST_CLI=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || out.Len() != 0 ||
			strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), "tcpshift: unknown ") {
			t.Errorf("tcpshift %v: %v, stdout %q, stderr %q; want exit 1 and one line on stderr", args, err, out.String(), errb.String())
		}
	}
}

// Flags placed after positional arguments or the command name reach their
// command, as the errors about their values show (no kernel needed).
func TestFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"wait-drained", "tcp-echo", "v1", "--timeout", "-5s"}, "--timeout -5s: must be above 0"},
		{[]string{"wait-drained", "tcp-echo", "v1", "--timeout=-5s"}, "--timeout -5s: must be above 0"},
		{[]string{"status", "tcp-echo", "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{[]string{"status", "tcp-echo", "--netns", "/nonexistent/ns"}, "/nonexistent/ns"},
		{[]string{"set-weight", "tcp-echo", "v1=0", "--netns", "/nonexistent/ns"}, "/nonexistent/ns"},
	} {
		_, _, err := runCLI(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(nil, nil)
	for _, tc := range []struct{ in, want string }{
		// Already in order, or nothing to move.
		{"", ""},
		{"--help", "--help"},
		{"status", "status"},
		{"--netns /run/netns/a status -o json tcp-echo", "--netns /run/netns/a status -o json tcp-echo"},
		// A command's own flags go before its positional arguments, with their values.
		{"status tcp-echo -o json", "status -o json tcp-echo"},
		{"status tcp-echo --output json", "status --output json tcp-echo"},
		{"status tcp-echo --output=json", "status --output=json tcp-echo"},
		{"status tcp-echo -o=json", "status -o=json tcp-echo"},
		{"wait-drained tcp-echo v1 --timeout 5s", "wait-drained --timeout 5s tcp-echo v1"},
		{"apply -f routes.yaml", "apply -f routes.yaml"},
		{"proxy -f routes.yaml --no-bpf --grace 1s", "proxy -f routes.yaml --no-bpf --grace 1s"},
		// Bool flags take no value: v1=0 stays positional.
		{"proxy --no-bpf routes.yaml", "proxy --no-bpf routes.yaml"},
		{"set-weight tcp-echo --help v1=0", "set-weight --help tcp-echo v1=0"},
		// Global flags after the command name move before it.
		{"status --netns X", "--netns X status"},
		{"status tcp-echo -o json --netns X", "--netns X status -o json tcp-echo"},
		{"set-weight tcp-echo v1=0 --netns /run/netns/a", "--netns /run/netns/a set-weight tcp-echo v1=0"},
		{"--bpffs /b set-weight tcp-echo v1=80 v2=20 --netns=/n", "--bpffs /b --netns=/n set-weight tcp-echo v1=80 v2=20"},
		{"status tcp-echo --version", "--version status tcp-echo"},
		// A value is taken whatever it looks like, as Go's flag package does.
		{"status --netns -o json", "--netns -o status json"},
		// -- stops reordering; it goes right after the flags.
		{"set-weight tcp-echo -- v1=0 --netns X", "set-weight -- tcp-echo v1=0 --netns X"},
		{"status -o json -- --weird-name", "status -o json -- --weird-name"},
		{"--netns X -- status", "--netns X -- status"},
		// A lone - is positional.
		{"apply -f - extra", "apply -f - extra"},
		{"status - -o json", "status -o json -"},
		// Unknown flags go where urfave rejects them; unknown commands stay as they are.
		{"status tcp-echo -x", "status -x tcp-echo"},
		{"stauts tcp-echo --netns X", "stauts tcp-echo --netns X"},
		// A flag whose value is missing is not given the next word.
		{"status tcp-echo -o", "status -o tcp-echo"},
		{"status tcp-echo --netns", "status --netns tcp-echo"},
		// The completion request stays last.
		{"status tcp-echo --ou " + completionFlag, "status --ou tcp-echo " + completionFlag},
	} {
		args := append([]string{"tcpshift"}, strings.Fields(tc.in)...)
		want := append([]string{"tcpshift"}, strings.Fields(tc.want)...)
		if got := reorderArgs(app, args); !slices.Equal(got, want) {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, strings.Join(got[1:], " "), tc.want)
		}
	}
}

func TestReorderArgsFollowsDeclaredFlags(t *testing.T) {
	app := newApp(nil, nil)
	// Flags the commands will gain later need no change here.
	cmd := app.Command("down")
	cmd.Flags = append(cmd.Flags, &cli.BoolFlag{Name: "stale"}, &cli.StringFlag{Name: "reason"})
	got := reorderArgs(app, strings.Fields("tcpshift down x --stale --reason gone y"))
	if want := strings.Fields("tcpshift down --stale --reason gone x y"); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"apply", "set-weight", "status", "wait-drained", "down", "help", "h"}
	for typed, want := range map[string]string{
		"stauts": "status", "aply": "apply", "set-weigth": "set-weight", "stat": "status",
		"wait": "wait-drained", "foo": "", "": "", "dwon": "down",
	} {
		if got := suggest(typed, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", typed, got, want)
		}
	}
}
