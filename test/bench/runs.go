package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// keepRuns is how many runs runs/ keeps; the oldest go first.
const keepRuns = 30

// runName is a run's file name without extension: its date and commit.
func runName(res *results) string {
	date := res.Date
	if t, err := time.Parse(time.RFC3339, res.Date); err == nil {
		date = t.UTC().Format("2006-01-02T150405Z")
	}
	name := date + "-" + strings.ReplaceAll(res.Machine.Commit, "+", "-")
	if res.RateOnly {
		name += "-rate-only"
	}
	if res.Smoke {
		name += "-smoke"
	}
	return name
}

// archiveRun keeps a run's report in dir (as <date>-<commit>.md and .json),
// drops the oldest beyond keepRuns and writes dir/README.md, the index that
// groups the runs by machine.
func archiveRun(dir string, res *results, md string, js []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := runName(res)
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	runs, err := readRuns(dir)
	if err != nil {
		return err
	}
	for len(runs) > keepRuns {
		old := runs[len(runs)-1]
		runs = runs[:len(runs)-1]
		os.Remove(filepath.Join(dir, old.file+".md"))
		os.Remove(filepath.Join(dir, old.file+".json"))
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(runIndex(runs)), 0o644)
}

type keptRun struct {
	file string
	res  *results
}

// readRuns reads the kept runs, newest first.
func readRuns(dir string) ([]keptRun, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var runs []keptRun
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r results
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, keptRun{file: strings.TrimSuffix(filepath.Base(f), ".json"), res: &r})
	}
	slices.SortFunc(runs, func(a, b keptRun) int {
		if c := strings.Compare(b.res.Date, a.res.Date); c != 0 {
			return c
		}
		return strings.Compare(b.file, a.file)
	})
	return runs, nil
}

// runIndex lists the kept runs by machine, newest first, with the
// short-connection ratios to direct of the kernel paths.
func runIndex(runs []keptRun) string {
	var b strings.Builder
	b.WriteString("# Benchmark runs\n\nThe last runs of `bench` (newest first), written by the benchmark itself. " +
		"Runs are grouped by machine fingerprint (CPU model, vCPUs, kernel release and build, lockdown, LSMs, clocksource, mitigations; " +
		"each run's report ends with them): absolute figures (connections per second, CPU µs, BPF ns) compare only within one group, " +
		"and ratios to direct only within one run. Smoke runs are seconds long, to keep the benchmark working: their figures are not measurements to cite.\n")
	var order []string
	groups := map[string][]keptRun{}
	for _, r := range runs {
		fp := r.res.Machine.Fingerprint()
		if _, ok := groups[fp]; !ok {
			order = append(order, fp)
		}
		groups[fp] = append(groups[fp], r)
	}
	for _, fp := range order {
		m := groups[fp][0].res.Machine
		fmt.Fprintf(&b, "\n## Machine %s\n\n%s, %d vCPUs, kernel %s %s, lockdown %s, LSMs %s, clocksource %s; %s.\n\n",
			fp, m.CPUModel, m.VCPUs, m.Kernel, m.KernelBuild, m.Lockdown, m.LSMs, m.Clocksource, m.Mitigations)
		b.WriteString("| run | commit | kind | direct conn/s | lookup | connect | proxy | direct CPU µs/conn | lookup CPU | connect CPU |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range groups[fp] {
			kind := "full"
			switch {
			case r.res.Smoke:
				kind = "smoke"
			case r.res.RateOnly:
				kind = "rate only"
			}
			d := find(r.res, "direct")
			rate := func(name string) string {
				return ratioOf(r.res, d, name, func(p *pathResult) []float64 { return p.Rate })
			}
			cpu := func(name string) string {
				return ratioOf(r.res, d, name, func(p *pathResult) []float64 { return p.CPUPerConn })
			}
			direct, directCPU := "–", "–"
			if d != nil && len(d.Rate) > 0 {
				direct = fmt.Sprintf("%.0f", median(d.Rate))
			}
			if d != nil && len(d.CPUPerConn) > 0 {
				directCPU = fmt.Sprintf("%.1f", median(d.CPUPerConn))
			}
			fmt.Fprintf(&b, "| [%s](%s.md) | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.res.Date, r.file, r.res.Machine.Commit, kind,
				direct, rate("tcpshift-lookup"), rate("tcpshift-connect"), rate("tcpshift-proxy"), directCPU, cpu("tcpshift-lookup"), cpu("tcpshift-connect"))
		}
	}
	return b.String()
}

// ratioOf is a path's median over direct's, "–" when either is missing.
func ratioOf(res *results, direct *pathResult, name string, get func(*pathResult) []float64) string {
	p := find(res, name)
	if p == nil || direct == nil || p.Skipped != "" {
		return "–"
	}
	x, d := get(p), get(direct)
	if len(x) == 0 || len(d) == 0 || median(d) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", median(x)/median(d))
}
