package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// fakeMachine is a machineSource over files of a test's own.
func fakeMachine(files map[string]string, securityfs string) machineSource {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[strings.TrimPrefix(name, "/")] = &fstest.MapFile{Data: []byte(data)}
	}
	return machineSource{
		readFile:   func(p string) ([]byte, error) { return fs.ReadFile(fsys, strings.TrimPrefix(p, "/")) },
		readDir:    func(p string) ([]os.DirEntry, error) { return fs.ReadDir(fsys, strings.TrimPrefix(p, "/")) },
		uname:      func() (string, string) { return "6.18.44-fc-v1272", "#1 SMP PREEMPT_DYNAMIC @0" },
		vcpus:      2,
		securityfs: securityfs,
		commit:     func() string { return "bba8790abcde" },
	}
}

var machineFiles = map[string]string{
	"/proc/cpuinfo": "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n\n" +
		"processor\t: 1\nmodel name\t: AMD EPYC\n",
	"/proc/cmdline": "mitigations=auto,no_guest_host console=ttyS0 quiet -- --mitigations=off-is-init's\n",
	"/sys/devices/system/clocksource/clocksource0/current_clocksource": "tsc\n",
	"/sys/devices/system/cpu/vulnerabilities/spectre_v2":               "Mitigation: Retpolines; STIBP: disabled\n",
	"/sys/devices/system/cpu/vulnerabilities/meltdown":                 "Not affected\n",
	"/sys/devices/system/cpu/vulnerabilities/spec_store_bypass":        "Vulnerable\n",
	"/sec/lockdown": "none [integrity] confidentiality\n",
	"/sec/lsm":      "lockdown,capability,landlock,bpf",
}

func TestGatherMachine(t *testing.T) {
	m := gatherMachine(fakeMachine(machineFiles, "/sec"))
	want := machine{
		CPUModel: "AMD EPYC", VCPUs: 2, Kernel: "6.18.44-fc-v1272", KernelBuild: "#1 SMP PREEMPT_DYNAMIC @0",
		Lockdown: "integrity", LSMs: "lockdown,capability,landlock,bpf", Clocksource: "tsc",
		Mitigations: "mitigations=auto,no_guest_host; spec_store_bypass: Vulnerable; spectre_v2: Mitigation: Retpolines; STIBP: disabled",
		Commit:      "bba8790abcde",
	}
	if m != want {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

// TestGatherMachineMissing: what cannot be read is "unknown"; no
// mitigations= argument is the kernel's default.
func TestGatherMachineMissing(t *testing.T) {
	src := fakeMachine(map[string]string{"/proc/cmdline": "quiet"}, "")
	src.commit = func() string { return "" }
	m := gatherMachine(src)
	for name, got := range map[string]string{"cpu": m.CPUModel, "lockdown": m.Lockdown, "lsm": m.LSMs,
		"clocksource": m.Clocksource, "commit": m.Commit} {
		if got != unknown {
			t.Errorf("%s: got %q, want %q", name, got, unknown)
		}
	}
	if m.Mitigations != "mitigations=auto (default)" {
		t.Errorf("mitigations: %q", m.Mitigations)
	}
	// securityfs there without lockdown: a kernel built without it.
	files := map[string]string{"/sec/lsm": "capability"}
	m = gatherMachine(fakeMachine(files, "/sec"))
	if m.Lockdown != "not built in" || m.LSMs != "capability" {
		t.Errorf("lockdown %q, lsm %q", m.Lockdown, m.LSMs)
	}
}

// TestFingerprint: the commit does not change the machine; anything of the
// machine does.
func TestFingerprint(t *testing.T) {
	a := gatherMachine(fakeMachine(machineFiles, "/sec"))
	b := a
	b.Commit = "other"
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("the commit changed the fingerprint")
	}
	for _, change := range []func(*machine){
		func(m *machine) { m.KernelBuild = "#2" },
		func(m *machine) { m.Lockdown = "none" },
		func(m *machine) { m.LSMs = "capability" },
		func(m *machine) { m.Mitigations = "mitigations=off" },
		func(m *machine) { m.Clocksource = "kvm-clock" },
		func(m *machine) { m.VCPUs = 4 },
	} {
		c := a
		change(&c)
		if c.Fingerprint() == a.Fingerprint() {
			t.Errorf("%+v has the fingerprint of %+v", c, a)
		}
	}
}

func TestThisMachine(t *testing.T) {
	m := thisMachine() // no root needed: without it securityfs stays unknown
	if m.Kernel == "" || m.Kernel == unknown || m.VCPUs < 1 {
		t.Errorf("%+v", m)
	}
}

func TestMachineSection(t *testing.T) {
	m := gatherMachine(fakeMachine(machineFiles, "/sec"))
	out := machineSection(m)
	for _, row := range []string{
		"## Machine",
		"| fingerprint | " + m.Fingerprint() + " |",
		"| commit | bba8790abcde |",
		"| CPU | AMD EPYC, 2 vCPUs |",
		"| kernel | 6.18.44-fc-v1272 #1 SMP PREEMPT_DYNAMIC @0 |",
		"| lockdown | integrity |",
		"| LSMs | lockdown,capability,landlock,bpf |",
		"| clocksource | tsc |",
		"| mitigations | mitigations=auto,no_guest_host; spec_store_bypass: Vulnerable; spectre_v2: Mitigation: Retpolines; STIBP: disabled |",
	} {
		if !strings.Contains(out, row) {
			t.Errorf("no %q in:\n%s", row, out)
		}
	}
	// The whole report carries it, and names commit and machine at the top.
	res := &results{Date: "2026-12-06T08:00:00Z", Kernel: m.Kernel, CPUs: 2, Machine: m,
		Paths: []*pathResult{{Name: "direct", Rate: []float64{1000}}}}
	md := markdown(res)
	if !strings.Contains(md, out) || !strings.Contains(md, "commit bba8790abcde, machine "+m.Fingerprint()) {
		t.Errorf("report without the machine:\n%s", md)
	}
}

// TestArchiveRun: each run is kept under its date and commit, the index
// groups runs by machine, newest first, and only the last keepRuns stay.
func TestArchiveRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs")
	a := gatherMachine(fakeMachine(machineFiles, "/sec"))
	b := a
	b.KernelBuild = "#1 SMP PREEMPT_DYNAMIC other"
	run := func(date string, m machine, lookup float64, rateOnly bool) {
		t.Helper()
		res := &results{Date: date, Machine: m, RateOnly: rateOnly, Paths: []*pathResult{
			{Name: "direct", Rate: []float64{1000}, CPUPerConn: []float64{200}},
			{Name: "tcpshift-lookup", Rate: []float64{lookup}, CPUPerConn: []float64{220}},
			{Name: "tcpshift-proxy", Skipped: "not built"},
		}}
		js, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if err := archiveRun(dir, res, "report of "+date, js); err != nil {
			t.Fatal(err)
		}
	}
	run("2026-12-05T10:00:00Z", a, 900, false)
	run("2026-12-06T08:00:00Z", b, 970, true)
	run("2026-12-06T09:00:00Z", a, 950, false)
	md, err := os.ReadFile(filepath.Join(dir, "2026-12-06T090000Z-bba8790abcde.md"))
	if err != nil || string(md) != "report of 2026-12-06T09:00:00Z" {
		t.Fatalf("%q %v", md, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2026-12-06T080000Z-bba8790abcde-rate-only.json")); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(idx)
	ia, ib := strings.Index(s, "## Machine "+a.Fingerprint()), strings.Index(s, "## Machine "+b.Fingerprint())
	if ia < 0 || ib < 0 || ia > ib {
		t.Fatalf("machine sections missing or out of order (newest run's machine first):\n%s", s)
	}
	r9 := strings.Index(s, "| [2026-12-06T09:00:00Z](2026-12-06T090000Z-bba8790abcde.md) | bba8790abcde | full | 1000 | 0.95× | – | – | 200.0 | 1.10× | – |")
	r10 := strings.Index(s, "| [2026-12-05T10:00:00Z](2026-12-05T100000Z-bba8790abcde.md) | bba8790abcde | full | 1000 | 0.90× |")
	rb := strings.Index(s, "| rate only | 1000 | 0.97× |")
	if r9 < 0 || r10 < 0 || rb < 0 || !(r9 < r10 && r10 < ib && ib < rb) {
		t.Errorf("rows missing or misplaced:\n%s", s)
	}
	for i := 0; i < keepRuns; i++ {
		run(fmt2026(i), a, 950, false)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != keepRuns {
		t.Errorf("%d runs kept, want %d", len(files), keepRuns)
	}
	if _, err := os.Stat(filepath.Join(dir, "2026-12-05T100000Z-bba8790abcde.md")); !os.IsNotExist(err) {
		t.Errorf("the oldest run is still there: %v", err)
	}
}

func fmt2026(i int) string {
	return "2026-12-07T" + string(rune('0'+i/10%10)) + string(rune('0'+i%10)) + ":00:00Z"
}
