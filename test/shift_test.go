package test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/shift"
)

// shiftEnv is the echo pair with accounting seen by sockops (the test's
// listeners are in the cgroup) and tcp-echo all on v1.
func shiftEnv(t *testing.T) (*testenv.Env, *loader.Target) {
	env := testenv.New(t)
	env.Join()
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	setWeights(t, tg, 100, 0)
	return env, tg
}

// A shift 10, 50, 100: the connections opened at each step split exactly
// by its weights; it ends at 0/100 and returns once v1 has drained.
func TestShiftSteps(t *testing.T) {
	env, tg := shiftEnv(t)
	var mu sync.Mutex
	var perStep []map[string]int
	long, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	if reply, err := echo.Ask(long, "held"); err != nil || reply != "one held" {
		t.Fatalf("held connection: %q %v", reply, err)
	}
	var out strings.Builder
	err = shift.Run(context.Background(), tg, shift.Options{
		Service: "tcp-echo", To: "v2", Steps: []uint32{10, 50, 100}, Interval: 300 * time.Millisecond,
		Gates: shift.Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}, Out: &out, Poll: 20 * time.Millisecond,
		AfterStep: func(step int) {
			got := env.Count(frontend, 20)
			mu.Lock()
			perStep = append(perStep, got)
			mu.Unlock()
			if step == 2 {
				time.AfterFunc(200*time.Millisecond, func() { long.Close() })
			}
		},
	})
	if err != nil {
		t.Fatalf("shift: %v\n%s", err, out.String())
	}
	want := []map[string]int{{"one": 18, "two": 2}, {"one": 10, "two": 10}, {"two": 20}}
	for i := range want {
		if !maps.Equal(perStep[i], want[i]) {
			t.Fatalf("step %d: 20 connections went %v, want %v\n%s", i+1, perStep[i], want[i], out.String())
		}
	}
	s := status(t, tg)
	if s.Subsets[0].Percent != 0 || s.Subsets[1].Percent != 100 || s.Subsets[0].Active != 0 {
		t.Fatalf("after the shift: %+v", s.Subsets)
	}
	if s.Shift == nil || s.Shift.State != "done" || s.Shift.Done != 3 || s.Shift.Percent != 100 {
		t.Fatalf("status shift %+v, want done at step 3 (100%%)", s.Shift)
	}
	for _, want := range []string{"step 1/3: v1=90% v2=10%", "step 3/3: v1=0% v2=100%", "tcp-echo v1: drained"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("shift output lacks %q:\n%s", want, out.String())
		}
	}
}

// resetter accepts connections and resets them: a broken new version.
func resetter(t *testing.T, env *testenv.Env, addr string) {
	ln := env.Listen(addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
}

// traffic opens connections to addr until stopped.
func traffic(env *testenv.Env) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			env.Ask(frontend)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// A new version that resets its connections fails the reset-rate gate
// within the first step's interval: the weights go back to 100/0 and the
// error names the gate and its figures.
func TestShiftRollsBackOnResets(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	env.Echo("127.0.0.1:9001", "one")
	resetter(t, env, "127.0.0.1:9002")
	tg := env.Target()
	apply(t, tg, echoConfig)
	setWeights(t, tg, 100, 0)
	stop := traffic(env)
	defer stop()
	var out strings.Builder
	start := time.Now()
	err := shift.Run(context.Background(), tg, shift.Options{
		Service: "tcp-echo", To: "v2", Steps: []uint32{10, 50, 100}, Interval: 2 * time.Second,
		Gates: shift.Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}, Out: &out, Poll: 20 * time.Millisecond,
	})
	took := time.Since(start)
	var f *shift.Failure
	if !errors.As(err, &f) || f.Gate != "reset-rate" || !strings.Contains(err.Error(), "v2: ") || !strings.Contains(err.Error(), "connections reset") {
		t.Fatalf("shift with a resetting v2: %v, want the reset-rate gate with figures\n%s", err, out.String())
	}
	if took > 2*time.Second {
		t.Fatalf("rolled back after %s, want within the first interval (2s)", took)
	}
	s := status(t, tg)
	if s.Subsets[0].Weight != 100 || s.Subsets[1].Weight != 0 || s.Shift == nil || s.Shift.State != "rolled back" ||
		!strings.Contains(s.Shift.Note, "reset-rate") {
		t.Fatalf("after the rollback: weights %d/%d, shift %+v", s.Subsets[0].Weight, s.Subsets[1].Weight, s.Shift)
	}
}

// --abort from another shell and the end of the context (SIGINT) roll
// back as a failed gate does.
func TestShiftAbort(t *testing.T) {
	env, tg := shiftEnv(t)
	for _, how := range []string{"abort", "sigint"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			stepped := make(chan struct{}, 3)
			done := make(chan error, 1)
			go func() {
				done <- shift.Run(ctx, tg, shift.Options{
					Service: "tcp-echo", To: "v2", Steps: []uint32{10, 100}, Interval: time.Minute,
					Gates: shift.Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}, Poll: 20 * time.Millisecond,
					AfterStep: func(int) { stepped <- struct{}{} },
				})
			}()
			select {
			case <-stepped:
			case err := <-done:
				t.Fatalf("shift ended before its first step: %v", err)
			}
			if s := status(t, tg); s.Subsets[1].Percent != 10 || s.Shift.State != "running" {
				t.Fatalf("during step 1: %v%% to v2, shift %+v", s.Subsets[1].Percent, s.Shift)
			}
			if how == "abort" {
				c := shellAt(t, env)
				if out, err := c.run("shift", "tcp-echo", "--abort"); err != nil || !strings.Contains(out, "abort asked") {
					t.Fatalf("shift --abort: %q %v", out, err)
				}
			} else {
				cancel(errors.New("interrupt"))
			}
			err := <-done
			if !errors.Is(err, shift.ErrAborted) {
				t.Fatalf("shift: %v, want aborted", err)
			}
			if s := status(t, tg); s.Subsets[0].Weight != 100 || s.Subsets[1].Weight != 0 || s.Shift.State != "rolled back" {
				t.Fatalf("after %s: weights %d/%d, shift %+v", how, s.Subsets[0].Weight, s.Subsets[1].Weight, s.Shift)
			}
		})
	}
}

// A shifting process killed mid-step leaves the weights of its last step,
// and status says the shift was interrupted; --abort then rolls back.
func TestShiftInterrupted(t *testing.T) {
	env, tg := shiftEnv(t)
	bin := buildTcpshift(t)
	cmd := exec.Command(bin, "--netns", env.NS.Path(), "--bpffs", env.BPFFS, "--cgroup", env.Cgroup,
		"shift", "tcp-echo", "--to", "v2", "--steps", "20,100", "--interval", "1m")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var killed atomic.Bool
	t.Cleanup(func() {
		if !killed.Load() {
			cmd.Process.Kill()
		}
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s := status(t, tg); s.Shift != nil && s.Shift.Done == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shift never took its first step:\n%s", out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	killed.Store(true)
	cmd.Wait()
	s := status(t, tg)
	if s.Subsets[1].Percent != 20 || s.Shift.State != "interrupted" {
		t.Fatalf("after kill -9: %v%% to v2, shift %+v; want 20%% and interrupted", s.Subsets[1].Percent, s.Shift)
	}
	c := shellAt(t, env)
	if st := c.must(t, "status"); !strings.Contains(st, "interrupted at step 1/2 (20%)") {
		t.Fatalf("status:\n%s", st)
	}
	if got := env.Count(frontend, 10); !maps.Equal(got, map[string]int{"one": 8, "two": 2}) {
		t.Fatalf("the interrupted step's weights are not in force: %v", got)
	}
	c.must(t, "shift", "tcp-echo", "--abort")
	if s := status(t, tg); s.Subsets[0].Weight != 100 || s.Subsets[1].Weight != 0 || s.Shift.State != "rolled back" {
		t.Fatalf("after --abort: weights %d/%d, shift %+v", s.Subsets[0].Weight, s.Subsets[1].Weight, s.Shift)
	}
}

// cliShell runs the tcpshift binary's commands against the test's state.
type cliShell struct {
	env *testenv.Env
	bin string
}

// shellAt builds the tcpshift binary for the test.
func shellAt(t *testing.T, env *testenv.Env) cliShell {
	return cliShell{env: env, bin: buildTcpshift(t)}
}

func (c cliShell) run(args ...string) (string, error) {
	full := append([]string{"--netns", c.env.NS.Path(), "--bpffs", c.env.BPFFS, "--cgroup", c.env.Cgroup}, args...)
	out, err := exec.Command(c.bin, full...).CombinedOutput()
	return string(out), err
}

func (c cliShell) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatalf("tcpshift %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Rebalance closes the old subset's 200 long-lived connections gradually
// over 10 s, never more than the rate allows in a second; the clients
// reconnect to v2; another service's connections to the same backend stay.
// It does so through the path this host prefers (the BPF iterator where the
// kernel loads it) and through sock_diag with the iterator off.
func TestRebalance(t *testing.T) {
	preferred := loader.RebalanceSockDiag
	if features.Check(features.IterTCP) == nil {
		preferred = loader.RebalanceIterator
	}
	for _, tc := range []struct{ name, disable, want string }{
		{"preferred", "", preferred},
		{"sock_diag", string(features.IterTCP), loader.RebalanceSockDiag},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(features.DisableEnv, tc.disable)
			checkRebalance(t, tc.want)
		})
	}
}

func checkRebalance(t *testing.T, wantPath string) {
	env, tg := shiftEnv(t)
	apply(t, tg, echoConfig+`- name: other
  listen: 127.0.0.101:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`)
	setWeights(t, tg, 100, 0)
	var others []net.Conn
	for range 20 {
		c, err := env.Dial("127.0.0.101:9000")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if reply, err := echo.Ask(c, "other"); err != nil || reply != "one other" {
			t.Fatalf("other service: %q %v", reply, err)
		}
		others = append(others, c)
	}
	const n, over, rate = 200, 10 * time.Second, 30
	type result struct {
		closedAt time.Time
		again    string
		err      error
	}
	results := make(chan result, n)
	ready := make(chan struct{}, n)
	for range n {
		go func() {
			c, err := env.Dial(frontend)
			if err != nil {
				results <- result{err: err}
				ready <- struct{}{}
				return
			}
			if reply, err := echo.Ask(c, "held"); err != nil || reply != "one held" {
				results <- result{err: fmt.Errorf("held: %q %v", reply, err)}
				ready <- struct{}{}
				return
			}
			ready <- struct{}{}
			var b [1]byte
			c.SetReadDeadline(time.Now().Add(time.Minute))
			_, closeErr := c.Read(b[:])
			at := time.Now()
			c.Close()
			if errors.Is(closeErr, os.ErrDeadlineExceeded) {
				results <- result{err: errors.New("never closed")}
				return
			}
			who, err := env.Ask(frontend)
			if err != nil {
				err = fmt.Errorf("reconnect after the held connection ended (%v): %w", closeErr, err)
			}
			results <- result{closedAt: at, again: who, err: err}
		}()
	}
	for range n {
		<-ready
	}
	if s := status(t, tg); s.Subsets[0].Active != n {
		t.Fatalf("v1 holds %d connections, want %d", s.Subsets[0].Active, n)
	}
	setWeights(t, tg, 0, 100)
	start := time.Now()
	var out strings.Builder
	if err := shift.Rebalance(context.Background(), tg, shift.RebalanceOptions{
		Service: "tcp-echo", Subsets: []string{"v1"}, Over: over, MaxPerSecond: rate, Out: &out,
	}); err != nil {
		t.Fatalf("rebalance: %v\n%s", err, out.String())
	}
	took := time.Since(start)
	if want := map[string]string{loader.RebalanceIterator: "with bpf_sock_destroy from a BPF socket iterator",
		loader.RebalanceSockDiag: "with sock_diag SOCK_DESTROY"}[wantPath]; !strings.Contains(out.String(), want) {
		t.Fatalf("rebalance did not say it closed %q:\n%s", want, out.String())
	}
	perSecond := map[int]int{}
	var closes []time.Time
	for range n {
		r := <-results
		if r.err != nil {
			// The counters say where it went: a reconnect steered to v1
			// (and closed again) shows in v1's connections, a refused one
			// in refused and no_socket.
			s := status(t, tg)
			t.Fatalf("client (its connection ended %s into the rebalance): %v\nrefused %d, no_socket %d\nv1 %+v\nv2 %+v\n%s",
				r.closedAt.Sub(start).Round(time.Millisecond), r.err, s.Refused, s.NoSocket,
				s.Subsets[0].Endpoints, s.Subsets[1].Endpoints, out.String())
		}
		if r.again != "two" {
			t.Fatalf("a client reconnected to %q, want two (v2)", r.again)
		}
		closes = append(closes, r.closedAt)
		perSecond[int(r.closedAt.Sub(start)/time.Second)]++
	}
	if took > over+time.Second {
		t.Fatalf("rebalance took %s, want within the %s window\n%s", took, over, out.String())
	}
	// No second-long window holds more closes than the rate.
	for _, a := range closes {
		inWindow := 0
		for _, b := range closes {
			if !b.Before(a) && b.Sub(a) < time.Second {
				inWindow++
			}
		}
		if inWindow > rate+rate/10 { // clients see a close a little after the kernel made it
			t.Fatalf("%d closes within a second from %s, the rate is %d a second", inWindow, a.Sub(start), rate)
		}
	}
	if len(perSecond) < 7 {
		t.Fatalf("closes fell in %d different seconds, want them spread over the window: %v", len(perSecond), perSecond)
	}
	for i, c := range others {
		if reply, err := echo.Ask(c, "still"); err != nil || reply != "one still" {
			t.Fatalf("the other service's connection %d: %q %v", i, reply, err)
		}
	}
	if s := status(t, tg); s.Subsets[0].Endpoints[0].Rebalanced != n {
		t.Fatalf("status: %d rebalanced, want %d", s.Subsets[0].Endpoints[0].Rebalanced, n)
	}
	t.Logf("%d closed in %s, by second: %v", n, took.Round(10*time.Millisecond), perSecond)
}

// In connect mode a new version nobody listens for fails the failure-rate
// gate: its connects are refused in the handshake.
func TestShiftRollsBackOnRefusedConnects(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one") // v2 (10.0.0.2:9002) is down
	env.Join()
	tg := env.Target()
	apply(t, tg, connectConfig)
	setWeights(t, tg, 100, 0)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			env.Ask("10.96.0.10:9000")
		}
	}()
	start := time.Now()
	err := shift.Run(context.Background(), tg, shift.Options{
		Service: "tcp-echo", To: "v2", Steps: []uint32{10, 100}, Interval: 2 * time.Second,
		Gates: shift.Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}, Poll: 20 * time.Millisecond,
	})
	var f *shift.Failure
	if !errors.As(err, &f) || f.Gate != "failure-rate" || !strings.Contains(err.Error(), "connects failed") {
		t.Fatalf("shift to a refusing v2: %v, want the failure-rate gate", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("rolled back after %s, want within the first interval", took)
	}
	if s := status(t, tg); s.Subsets[0].Weight != 100 || s.Subsets[1].Weight != 0 {
		t.Fatalf("after the rollback: weights %d/%d", s.Subsets[0].Weight, s.Subsets[1].Weight)
	}
}

// --pause holds a step past its interval; --resume lets the shift go on. A
// second shift of the same service is refused while one runs.
func TestShiftPauseResume(t *testing.T) {
	env, tg := shiftEnv(t)
	c := shellAt(t, env)
	stepped := make(chan int, 3)
	done := make(chan error, 1)
	go func() {
		done <- shift.Run(context.Background(), tg, shift.Options{
			Service: "tcp-echo", To: "v2", Steps: []uint32{10, 100}, Interval: 500 * time.Millisecond,
			Gates: shift.Gates{MaxFailureRate: 0.01, MaxResetRate: 0.01}, Poll: 20 * time.Millisecond, NoDrain: true,
			AfterStep: func(i int) { stepped <- i },
		})
	}()
	<-stepped
	c.must(t, "shift", "tcp-echo", "--pause")
	if out, err := c.run("shift", "tcp-echo", "--to", "v2", "--steps", "100", "--interval", "1s"); err == nil || !strings.Contains(out, "a shift is running for service tcp-echo") {
		t.Fatalf("a second shift while one runs: %v\n%s", err, out)
	}
	time.Sleep(1500 * time.Millisecond) // three intervals
	if s := status(t, tg); s.Shift.State != "paused" || s.Shift.Done != 1 || s.Subsets[1].Percent != 10 {
		t.Fatalf("paused: shift %+v, %v%% to v2", s.Shift, s.Subsets[1].Percent)
	}
	c.must(t, "shift", "tcp-echo", "--resume")
	if err := <-done; err != nil {
		t.Fatalf("shift after resume: %v", err)
	}
	if s := status(t, tg); s.Shift.State != "done" || s.Subsets[1].Percent != 100 {
		t.Fatalf("after resume: shift %+v, %v%% to v2", s.Shift, s.Subsets[1].Percent)
	}
}

// A kernel that closes sockets neither from BPF nor through sock_diag: rebalance
// refuses, says why, and closes nothing.
func TestRebalanceWithoutSockDestroy(t *testing.T) {
	t.Setenv(features.DisableEnv, string(features.IterTCP)+","+string(features.DiagDestroy))
	env, tg := shiftEnv(t)
	c, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if reply, err := echo.Ask(c, "held"); err != nil || reply != "one held" {
		t.Fatalf("held: %q %v", reply, err)
	}
	setWeights(t, tg, 0, 100)
	var out strings.Builder
	err = shift.Rebalance(context.Background(), tg, shift.RebalanceOptions{
		Service: "tcp-echo", Subsets: []string{"v1"}, Over: time.Second, Out: &out})
	if !errors.Is(err, loader.ErrNoSockDestroy) || !strings.Contains(err.Error(), string(features.IterTCP)) ||
		!strings.Contains(err.Error(), string(features.DiagDestroy)) {
		t.Fatalf("rebalance: %v, want ErrNoSockDestroy naming both facilities", err)
	}
	if reply, err := echo.Ask(c, "still"); err != nil || reply != "one still" {
		t.Fatalf("the connection after a refused rebalance: %q %v", reply, err)
	}
	if s := status(t, tg); s.Subsets[0].Active != 1 || s.Subsets[0].Rebalanced != 0 {
		t.Fatalf("v1: %d active, %d rebalanced; want 1 and 0", s.Subsets[0].Active, s.Subsets[0].Rebalanced)
	}
}
