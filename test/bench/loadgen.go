package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
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
	cpu     float64        // seconds the load generator used, from its exit status
}

// loadgenMain is the short-connection load generator, run as a child
// process inside the namespace (and the cgroup, so its CPU counts): workers
// connect, send one line, read the answer and close, as fast as they can,
// for a duration. Each worker has its own source addresses in 127.0.0.0/8,
// so ports never run out. Given several addresses with weights (the direct
// path splitting over the backends itself), every worker goes round a fixed
// interleaved sequence of them, as a weighted round robin would.
func loadgenMain(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	addrList := fs.String("addr", "", "comma-separated addresses to connect to")
	weightList := fs.String("weights", "", "comma-separated weights of the addresses; all 1 when empty")
	duration := fs.Duration("duration", 3*time.Second, "how long to run")
	workers := fs.Int("workers", 4, "concurrent clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addrs := strings.Split(*addrList, ",")
	weights := make([]int, len(addrs))
	for i := range weights {
		weights[i] = 1
	}
	if *weightList != "" {
		ws := strings.Split(*weightList, ",")
		if len(ws) != len(addrs) {
			return fmt.Errorf("-weights: %d weights for %d addresses", len(ws), len(addrs))
		}
		for i, s := range ws {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("-weights: bad weight %q", s)
			}
			weights[i] = n
		}
	}
	order := interleave(weights)
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
				// Workers start at different points of the sequence.
				who, err := once(d, addrs[order[(i+n)%len(order)]])
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

// interleave returns a sequence of indexes into weights in which each
// index appears as often as its weight, spread out (smooth weighted round
// robin): 4 and 1 give 0 0 1 0 0.
func interleave(weights []int) []int {
	total := 0
	for _, w := range weights {
		total += w
	}
	cur := make([]int, len(weights))
	order := make([]int, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			cur[i] += w
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		order = append(order, best)
	}
	return order
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
