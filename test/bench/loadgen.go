package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// loadgenResult is what one loadgen run reports.
type loadgenResult struct {
	Conns   int            `json:"conns"`
	Failed  int            `json:"failed"`
	Errors  map[string]int `json:"errors,omitempty"`
	Seconds float64        `json:"seconds"`
	P50us   float64        `json:"p50_us"`
	P99us   float64        `json:"p99_us"`
	Counts  map[string]int `json:"counts"` // who answered
}

// loadgenMain is the short-connection load generator, run as a child
// process inside the namespace (and the cgroup): workers connect, send one
// line, read the answer and close, as fast as they can, for a duration.
// Each worker has its own source addresses in 127.0.0.0/8, so ports never
// run out.
func loadgenMain(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	addr := fs.String("addr", "", "frontend to connect to")
	duration := fs.Duration("duration", 3*time.Second, "how long to run")
	workers := fs.Int("workers", 4, "concurrent clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type workerResult struct {
		lat    []time.Duration
		counts map[string]int
		errs   map[string]int
	}
	results := make([]workerResult, *workers)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(*duration)
	for i := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := workerResult{counts: map[string]int{}, errs: map[string]int{}}
			for n := 0; time.Now().Before(end); n++ {
				src := &net.TCPAddr{IP: net.IPv4(127, 1, byte(i), byte(1+n%250))}
				d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: src}
				t0 := time.Now()
				who, err := once(d, *addr)
				if err != nil {
					r.errs[err.Error()]++
					continue
				}
				r.lat = append(r.lat, time.Since(t0))
				r.counts[who]++
			}
			results[i] = r
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	out := loadgenResult{Counts: map[string]int{}, Errors: map[string]int{}, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	for _, r := range results {
		lat = append(lat, r.lat...)
		for k, v := range r.counts {
			out.Counts[k] += v
		}
		for k, v := range r.errs {
			out.Errors[k] += v
			out.Failed += v
		}
	}
	out.Conns = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		out.P50us = float64(lat[len(lat)/2].Microseconds())
		out.P99us = float64(lat[len(lat)*99/100].Microseconds())
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// once is one short connection: connect, one line each way, close.
func once(d net.Dialer, addr string) (string, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("x\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	who, _, _ := strings.Cut(line, " ")
	return who, nil
}
