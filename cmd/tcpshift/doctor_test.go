package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/features"
)

type doctorJSON struct {
	Facilities []doctorRow     `json:"facilities"`
	Modes      map[string]bool `json:"modes"`
	Missing    []features.Name `json:"missing"`
}

func runDoctor(t *testing.T, args ...string) (doctorJSON, string, error) {
	t.Helper()
	out, _, err := runCLI(append([]string{"doctor", "-o", "json"}, args...)...)
	var d doctorJSON
	if jerr := json.Unmarshal([]byte(out), &d); jerr != nil {
		t.Fatalf("doctor -o json: %v\n%s", jerr, out)
	}
	return d, out, err
}

// doctor lists every facility as the probes find it on this host, and the
// core ones are all here (CI's machines run every mode): exit 0.
func TestDoctorReportsThisHost(t *testing.T) {
	t.Setenv(features.DisableEnv, "")
	d, out, err := runDoctor(t)
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	if len(d.Facilities) != len(features.All) {
		t.Fatalf("doctor lists %d facilities, want %d", len(d.Facilities), len(features.All))
	}
	for i, row := range d.Facilities {
		f := features.All[i]
		probe := features.Check(f.Name)
		if row.Name != f.Name || row.Available != (probe == nil) || row.Core != f.Core || row.Without == "" || row.Enables == "" {
			t.Errorf("row %d: %+v; the probe says %v", i, row, probe)
		}
		if !row.Available && row.Error == "" {
			t.Errorf("%s unavailable without the kernel's error", row.Name)
		}
	}
	if len(d.Missing) != 0 || !d.Modes["lookup"] || !d.Modes["connect"] || !d.Modes["proxy"] {
		t.Fatalf("modes %v, missing %v: want every mode on this host", d.Modes, d.Missing)
	}
	table, _, err := runCLI("doctor")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FACILITY", "iter_sk_storage", "sock_diag_destroy", "lookup mode: can run", "connect mode: can run", "proxy mode: can run"} {
		if !strings.Contains(table, want) {
			t.Errorf("doctor's table lacks %q:\n%s", want, table)
		}
	}
}

// An optional facility refused costs only its path: exit 0, the row says
// why and what takes over.
func TestDoctorOptionalRefused(t *testing.T) {
	t.Setenv(features.DisableEnv, "iter_sk_storage,iter_tcp_sock_destroy")
	d, out, err := runDoctor(t)
	if err != nil {
		t.Fatalf("doctor with the iterators off: %v\n%s", err, out)
	}
	for _, row := range d.Facilities {
		off := row.Name == features.IterSkStorage || row.Name == features.IterTCP
		if off && (row.Available || !strings.Contains(row.Error, features.DisableEnv)) {
			t.Errorf("%s: %+v, want unavailable, turned off by %s", row.Name, row, features.DisableEnv)
		}
	}
	table, _, _ := runCLI("doctor")
	if !strings.Contains(table, "status reads them through sock_diag instead") || !strings.Contains(table, "why not:") {
		t.Errorf("doctor's table does not say what takes over:\n%s", table)
	}
}

// A core facility refused: exit 1, naming it.
func TestDoctorCoreRefused(t *testing.T) {
	t.Setenv(features.DisableEnv, "sk_lookup")
	d, out, err := runDoctor(t)
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 1 || !strings.Contains(err.Error(), "lacks sk_lookup") {
		t.Fatalf("doctor without sk_lookup: %v, want exit 1 naming sk_lookup\n%s", err, out)
	}
	if d.Modes["lookup"] || len(d.Missing) != 1 || d.Missing[0] != features.SkLookup {
		t.Fatalf("modes %v, missing %v", d.Modes, d.Missing)
	}
}
