package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// machine names what a run ran on, so that figures from two machines are
// never read as one: BPF and TCP costs moved 1.5–2× between two machines of
// the same kind (issue 27), with another kernel build, lockdown and LSMs.
type machine struct {
	CPUModel    string `json:"cpu_model"`
	VCPUs       int    `json:"vcpus"`
	Kernel      string `json:"kernel"`       // uname -r
	KernelBuild string `json:"kernel_build"` // uname -v
	Lockdown    string `json:"lockdown"`     // the bracketed mode of /sys/kernel/security/lockdown
	LSMs        string `json:"lsms"`         // /sys/kernel/security/lsm
	Clocksource string `json:"clocksource"`
	// Mitigations: the kernel's mitigations= argument and each
	// vulnerability's state that is not "Not affected", sorted by name.
	Mitigations string `json:"mitigations"`
	Commit      string `json:"commit"` // the code measured; "+dirty" with uncommitted changes
}

// Fingerprint is a short hash of everything but the commit: two runs with
// the same fingerprint ran on the same kind of machine.
func (m machine) Fingerprint() string {
	h := sha256.Sum256([]byte(strings.Join([]string{m.CPUModel, fmt.Sprint(m.VCPUs), m.Kernel, m.KernelBuild,
		m.Lockdown, m.LSMs, m.Clocksource, m.Mitigations}, "\x00")))
	return fmt.Sprintf("%x", h[:4])
}

// machineSource is where gatherMachine reads from: the real machine, or a
// test's files.
type machineSource struct {
	readFile   func(string) ([]byte, error)
	readDir    func(string) ([]os.DirEntry, error)
	securityfs string // where securityfs is mounted ("" when it is not)
	uname      func() (release, version string)
	vcpus      int
	commit     func() string
}

const unknown = "unknown"

// gatherMachine reads the machine's description; what cannot be read is
// "unknown", never an error: a report without one field is still a report.
func gatherMachine(src machineSource) machine {
	read := func(p string) string {
		b, err := src.readFile(p)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	orUnknown := func(s string) string {
		if s == "" {
			return unknown
		}
		return s
	}
	m := machine{VCPUs: src.vcpus}
	m.Kernel, m.KernelBuild = src.uname()
	for _, line := range strings.Split(read("/proc/cpuinfo"), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			m.CPUModel = strings.TrimSpace(v)
			break
		}
	}
	m.CPUModel = orUnknown(m.CPUModel)
	m.Clocksource = orUnknown(read("/sys/devices/system/clocksource/clocksource0/current_clocksource"))
	m.Lockdown, m.LSMs = unknown, unknown
	if src.securityfs != "" {
		if s := read(filepath.Join(src.securityfs, "lockdown")); s != "" {
			m.Lockdown = s
			if i := strings.Index(s, "["); i >= 0 {
				if j := strings.Index(s[i:], "]"); j > 0 {
					m.Lockdown = s[i+1 : i+j]
				}
			}
		} else if _, err := src.readDir(src.securityfs); err == nil {
			m.Lockdown = "not built in"
		}
		m.LSMs = orUnknown(read(filepath.Join(src.securityfs, "lsm")))
	}
	var mit []string
	for _, arg := range strings.Fields(read("/proc/cmdline")) {
		if arg == "--" {
			break // the rest is init's
		}
		if strings.HasPrefix(arg, "mitigations=") {
			mit = append(mit, arg)
		}
	}
	if mit == nil {
		mit = append(mit, "mitigations=auto (default)")
	}
	const vulns = "/sys/devices/system/cpu/vulnerabilities"
	if entries, err := src.readDir(vulns); err == nil {
		var states []string
		for _, e := range entries {
			s := read(filepath.Join(vulns, e.Name()))
			if s == "" || s == "Not affected" {
				continue
			}
			states = append(states, e.Name()+": "+s)
		}
		sort.Strings(states)
		mit = append(mit, states...)
	}
	m.Mitigations = strings.Join(mit, "; ")
	m.Commit = orUnknown(src.commit())
	return m
}

// thisMachine describes the machine the benchmark runs on. securityfs is
// often not mounted (it was not here): it is then mounted on a temporary
// directory for the reading and unmounted again.
func thisMachine() machine {
	src := machineSource{
		readFile: os.ReadFile,
		readDir:  os.ReadDir,
		uname: func() (string, string) {
			var uts unix.Utsname
			if unix.Uname(&uts) != nil {
				return unknown, unknown
			}
			return unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Version[:])
		},
		vcpus:  cores(),
		commit: commit,
	}
	const sec = "/sys/kernel/security"
	if _, err := os.Stat(filepath.Join(sec, "lsm")); err == nil {
		src.securityfs = sec
	} else if dir, err := os.MkdirTemp("", "bench-securityfs-"); err == nil {
		defer os.Remove(dir)
		if unix.Mount("securityfs", dir, "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, "") == nil {
			defer unix.Unmount(dir, unix.MNT_DETACH)
			src.securityfs = dir
		}
	}
	return gatherMachine(src)
}

// commit is the code measured: the benchmark binary's VCS stamp (go build
// records it), else git in the working directory.
func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			return shortRev(rev) + dirty
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := shortRev(strings.TrimSpace(string(out)))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "+dirty"
	}
	return rev
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// machineSection is the report's description of the machine.
func machineSection(m machine) string {
	var b strings.Builder
	b.WriteString("## Machine\n\n")
	b.WriteString("Figures from another machine, even one of the same kind, are not comparable with these: compare ratios within one run, " +
		"and absolute figures only between runs of the same machine fingerprint (runs/README.md lists the last runs).\n\n")
	b.WriteString("| | |\n|---|---|\n")
	for _, row := range [][2]string{
		{"fingerprint", m.Fingerprint()},
		{"commit", m.Commit},
		{"CPU", fmt.Sprintf("%s, %d vCPUs", m.CPUModel, m.VCPUs)},
		{"kernel", m.Kernel + " " + m.KernelBuild},
		{"lockdown", m.Lockdown},
		{"LSMs", m.LSMs},
		{"clocksource", m.Clocksource},
		{"mitigations", m.Mitigations},
	} {
		fmt.Fprintf(&b, "| %s | %s |\n", row[0], strings.ReplaceAll(row[1], "|", "\\|"))
	}
	return b.String()
}
