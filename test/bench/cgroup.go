package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroupCPU returns the CPU time the processes of the cgroup v2 directory
// dir and of its descendants have used so far: usage_usec of cpu.stat,
// which every v2 cgroup has, with or without the cpu controller.
func cgroupCPU(dir string) (time.Duration, error) {
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("cgroup cpu usage: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cgroup cpu usage: %w", err)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("cgroup cpu usage: %w", err)
	}
	return 0, fmt.Errorf("cgroup cpu usage: no usage_usec in %s/cpu.stat", dir)
}

// removeCgroup removes the benchmark's cgroup. Processes that were just
// killed (nginx's workers follow their master) leave it a moment later.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuSample is a reading of the CPU time spent so far: the benchmark's
// cgroup, which is what the report counts, and the whole machine's busy
// time, to show what the cgroup leaves out (softirq work in ksoftirqd or
// on an idle CPU, kernel workers).
type cpuSample struct {
	cgroup  time.Duration
	machine float64 // seconds
	at      time.Time
}

func (w *world) cpuNow() (cpuSample, error) {
	cg, err := cgroupCPU(w.cgroup)
	return cpuSample{cg, cpuBusy(), time.Now()}, err
}

// since returns the cgroup's and the machine's CPU seconds from s0 to s.
func (s cpuSample) since(s0 cpuSample) (cgroup, machine float64) {
	return (s.cgroup - s0.cgroup).Seconds(), s.machine - s0.machine
}

// cpuBusy returns the seconds all CPUs spent not idle, from /proc/stat.
func cpuBusy() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	fields := strings.Fields(sc.Text())[1:]
	// user nice system idle iowait irq softirq steal guest guest_nice:
	// guest time is inside user already, and steal is another machine's.
	var busy float64
	for _, i := range []int{0, 1, 2, 5, 6} {
		if i < len(fields) {
			v, _ := strconv.ParseFloat(fields[i], 64)
			busy += v
		}
	}
	return busy / 100 // USER_HZ
}

// idleCPU measures what the cgroup uses while nothing is measured (the
// backends and every path's proxy waiting), in ms of CPU per second: all
// of them stay in the cgroup during every path's runs.
func (w *world) idleCPU(d time.Duration) (float64, error) {
	s0, err := w.cpuNow()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	s, err := w.cpuNow()
	if err != nil {
		return 0, err
	}
	cg, _ := s.since(s0)
	return cg * 1e3 / time.Since(t0).Seconds(), nil
}
