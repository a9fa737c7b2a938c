package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/shift"
)

func shiftCommand() *cli.Command {
	return &cli.Command{
		Name:      "shift",
		Usage:     "move a service's traffic to a subset step by step, with health gates and automatic rollback",
		ArgsUsage: "SERVICE --to SUBSET --steps 10,20,50,100 --interval 30s | SERVICE --abort|--pause|--resume",
		Description: "Gives SUBSET each step's percent of the service's total (the subsets in --from,\n" +
			"all others by default, share the rest in proportion to their weights), holds\n" +
			"each step for --interval and judges it on what the kernel saw of the new subset\n" +
			"in that time: failed connects (refused, timed out or reset in the handshake;\n" +
			"connect and proxy mode) and connections reset after they were established, as\n" +
			"rates of its connections, against --max-failure-rate and --max-reset-rate. A\n" +
			"step with fewer than --min-connections on the new subset waits, up to\n" +
			"--max-wait, rather than promote blind. --check runs a command before each step\n" +
			"(exit 0 to go on). When a gate fails, on --abort from another shell, or on\n" +
			"SIGINT, the weights go back at once to where they were before the shift and the\n" +
			"command exits 1 naming the gate and its figures. At 100% it waits until the old\n" +
			"subsets have drained (unless --no-drain).\n\n" +
			"The shift is kept with the namespace's state: status shows it, --pause and\n" +
			"--resume hold and release a step from any shell, and if the shifting process\n" +
			"dies the weights stay at its last step and status says the shift was\n" +
			"interrupted (--abort then rolls it back). One shift per service at a time.\n\n" +
			"Until it ends (done or rolled back) the shift alone sets the service's weights,\n" +
			"interrupted too (tcpshift run resumes it): set-weight, and an apply whose route\n" +
			"config changes them, are refused with where the shift is. With --force they\n" +
			"abort it first and say so; the shifting process then exits 1 without rolling\n" +
			"back over their weights. An apply that leaves the service's route as it was\n" +
			"keeps the shift's weights.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "the `SUBSET` traffic moves to"},
			&cli.StringSliceFlag{Name: "from", Usage: "a `SUBSET` that gives up its share (repeat; all others when absent)"},
			&cli.StringFlag{Name: "steps", Value: "10,20,50,100", Usage: "percents of the total for the target, rising, ending at 100"},
			&cli.DurationFlag{Name: "interval", Value: 30_000_000_000, Usage: "how long each step is held and judged"},
			&cli.StringFlag{Name: "max-failure-rate", Value: "1%", Usage: "failed connects of the new subset, as a share of its connections, that roll back"},
			&cli.StringFlag{Name: "max-reset-rate", Value: "1%", Usage: "resets of the new subset's established connections, as a share, that roll back"},
			&cli.Uint64Flag{Name: "min-connections", Usage: "connections the new subset needs in a step to be judged"},
			&cli.DurationFlag{Name: "max-wait", Usage: "how long a step may wait for --min-connections", DefaultText: "3 intervals"},
			&cli.StringFlag{Name: "check", Usage: "shell `COMMAND` run before each step; a non-zero exit rolls back"},
			&cli.BoolFlag{Name: "no-drain", Usage: "end at the last step without waiting for the old subsets to drain"},
			&cli.BoolFlag{Name: "rebalance", Usage: "at 100%, close the old subsets' connections gradually (see tcpshift rebalance) instead of waiting for them"},
			&cli.DurationFlag{Name: "rebalance-over", Usage: "the window --rebalance spreads the closes over", DefaultText: "--interval"},
			&cli.IntFlag{Name: "max-per-second", Value: 100, Usage: "--rebalance closes at most this many connections in any second"},
			&cli.DurationFlag{Name: "drain-timeout", Value: 300_000_000_000, Usage: "how long to wait for the old subsets to drain"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan: the weights of every step; change nothing"},
			&cli.BoolFlag{Name: "abort", Usage: "roll back the service's running or interrupted shift"},
			&cli.BoolFlag{Name: "pause", Usage: "hold the running shift at its step"},
			&cli.BoolFlag{Name: "resume", Usage: "let a paused shift go on (its step's interval starts again)"},
		},
		OnUsageError: usageError,
		Action:       runShift,
	}
}

func runShift(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("shift takes one SERVICE (tcpshift shift tcp-echo --to v2)")
	}
	service := c.Args().First()
	control := 0
	for _, f := range []string{"abort", "pause", "resume"} {
		if c.Bool(f) {
			control++
		}
	}
	if control > 1 {
		return errors.New("give one of --abort, --pause, --resume")
	}
	tg, err := target(c)
	if err != nil {
		return err
	}
	defer tg.Close()
	if control == 1 {
		return shiftControl(c, tg, service)
	}
	o, err := shiftOptions(c, service)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		return shiftPlan(c, tg, o)
	}
	return shift.Run(c.Context, tg, o)
}

func shiftOptions(c *cli.Context, service string) (shift.Options, error) {
	o := shift.Options{Service: service, To: c.String("to"), From: c.StringSlice("from"), Interval: c.Duration("interval"),
		MaxWait: c.Duration("max-wait"), Check: c.String("check"), NoDrain: c.Bool("no-drain"),
		DrainTimeout: c.Duration("drain-timeout"), Out: c.App.Writer,
		Rebalance: c.Bool("rebalance"), RebalanceOver: c.Duration("rebalance-over"), MaxPerSecond: c.Int("max-per-second"),
		Live: isTerminal(c.App.Writer)}
	if o.To == "" {
		return o, errors.New("shift needs --to SUBSET (or --abort, --pause, --resume)")
	}
	for _, s := range strings.Split(c.String("steps"), ",") {
		p, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(s), "%"), 10, 32)
		if err != nil {
			return o, fmt.Errorf("--steps %q: %q is not a percent", c.String("steps"), s)
		}
		o.Steps = append(o.Steps, uint32(p))
	}
	var err error
	if o.Gates.MaxFailureRate, err = parseRate("--max-failure-rate", c.String("max-failure-rate")); err != nil {
		return o, err
	}
	if o.Gates.MaxResetRate, err = parseRate("--max-reset-rate", c.String("max-reset-rate")); err != nil {
		return o, err
	}
	o.Gates.MinConnections = c.Uint64("min-connections")
	return o, o.Validate()
}

// parseRate reads 1%, 0.5% or 0.01.
func parseRate(flag, s string) (float64, error) {
	t := strings.TrimSpace(s)
	div := 1.0
	if strings.HasSuffix(t, "%") {
		t, div = strings.TrimSuffix(t, "%"), 100
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s %q: want a rate such as 1%% or 0.01", flag, s)
	}
	return v / div, nil
}

// shiftPlan prints every step's weights.
func shiftPlan(c *cli.Context, tg *loader.Target, o shift.Options) error {
	var svc *maps.Service
	err := tg.Read(func(set *maps.Set) (err error) {
		var ok bool
		svc, ok, err = set.Service(o.Service)
		if err == nil && !ok {
			err = fmt.Errorf("%w %q", loader.ErrNoService, o.Service)
		}
		return err
	})
	if err != nil {
		return err
	}
	to := svc.Subset(o.To)
	if to < 0 {
		return fmt.Errorf("service %s has no subset %q", svc.Name, o.To)
	}
	var from []int
	for _, name := range o.From {
		i := svc.Subset(name)
		if i < 0 {
			return fmt.Errorf("service %s has no subset %q", svc.Name, name)
		}
		from = append(from, i)
	}
	if len(from) == 0 {
		for i := range svc.Subsets {
			if i != to {
				from = append(from, i)
			}
		}
	}
	before := svc.Weights()
	w := c.App.Writer
	fmt.Fprintf(w, "shift %s to %s (dry run), each step held %s:\n", svc.Name, o.To, o.Interval)
	fmt.Fprintf(w, "  now:      %s\n", sharesText(svc, before))
	for i, p := range o.Steps {
		fmt.Fprintf(w, "  step %d/%d: %s\n", i+1, len(o.Steps), sharesText(svc, loader.ShiftWeights(before, to, from, p)))
	}
	return nil
}

func sharesText(svc *maps.Service, w []uint64) string {
	var total uint64
	for _, x := range w {
		total += x
	}
	var s []string
	for i, sub := range svc.Subsets {
		share := 0.0
		if total > 0 {
			share = float64(w[i]) * 100 / float64(total)
		}
		s = append(s, fmt.Sprintf("%s=%s%%", sub.Name, strconv.FormatFloat(share, 'f', -1, 64)))
	}
	return strings.Join(s, " ")
}

// shiftControl aborts, pauses or resumes a shift from any shell.
func shiftControl(c *cli.Context, tg *loader.Target, service string) error {
	w := c.App.Writer
	if c.Bool("abort") {
		sh, ok, err := tg.ShiftOf(service)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("service %s has no shift", service)
		}
		if loader.ShiftStateName(sh) == "interrupted" {
			if _, err := tg.RollBackShift(service, "aborted after it was interrupted"); err != nil {
				return err
			}
			fmt.Fprintf(w, "shift of %s: interrupted one rolled back\n", service)
			return nil
		}
		_, err = tg.ShiftUpdate(service, func(_ *maps.Service, s *maps.Shift) ([]uint64, error) {
			switch loader.ShiftStateName(*s) {
			case "running", "paused":
				s.State = maps.ShiftAborting
				return nil, nil
			}
			return nil, fmt.Errorf("the shift of %s is %s: nothing to abort", service, loader.ShiftStateName(*s))
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "shift of %s: abort asked; its process rolls it back\n", service)
		return nil
	}
	pause := c.Bool("pause")
	_, err := tg.ShiftUpdate(service, func(_ *maps.Service, s *maps.Shift) ([]uint64, error) {
		state := loader.ShiftStateName(*s)
		switch {
		case pause && state == "running":
			s.State = maps.ShiftPaused
		case !pause && state == "paused":
			s.State = maps.ShiftRunning
		default:
			return nil, fmt.Errorf("the shift of %s is %s", service, state)
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "shift of %s: %s\n", service, map[bool]string{true: "paused", false: "resumed"}[pause])
	return nil
}

func rebalanceCommand() *cli.Command {
	return &cli.Command{
		Name:      "rebalance",
		Usage:     "close a subset's established connections gradually, so clients reconnect by the weights in force",
		ArgsUsage: "SERVICE --subset OLD [--over 5m] [--max-per-second 100]",
		Description: "A weight change moves new connections only. rebalance closes the subset's\n" +
			"connections that are open, spread evenly over --over with jitter and never more\n" +
			"than --max-per-second in any second, so their clients reconnect and land by the\n" +
			"weights in force, without a reconnect storm. The kernel closes them itself\n" +
			"(bpf_sock_destroy from a socket iterator, Linux >= 6.5; the peer sees a reset);\n" +
			"only connections tcpshift counts for that subset are touched (accounting must\n" +
			"be on), never another service's. Give the subset weight 0 first, or its\n" +
			"clients may reconnect to it. Returns once the subset holds no connection.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "subset", Usage: "the `SUBSET` whose connections move (repeat for more)"},
			&cli.DurationFlag{Name: "over", Value: 5 * time.Minute, Usage: "the window the closes are spread over"},
			&cli.IntFlag{Name: "max-per-second", Value: 100, Usage: "closes in any second, at most"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("rebalance takes one SERVICE (tcpshift rebalance tcp-echo --subset v1)")
			}
			if len(c.StringSlice("subset")) == 0 {
				return errors.New("rebalance needs --subset SUBSET")
			}
			if c.Int("max-per-second") < 1 {
				return fmt.Errorf("--max-per-second %d: must be 1 or more", c.Int("max-per-second"))
			}
			tg, err := target(c)
			if err != nil {
				return err
			}
			defer tg.Close()
			return shift.Rebalance(c.Context, tg, shift.RebalanceOptions{Service: c.Args().First(), Subsets: c.StringSlice("subset"),
				Over: c.Duration("over"), MaxPerSecond: c.Int("max-per-second"), Out: c.App.Writer})
		},
	}
}

// isTerminal reports whether w is a terminal, where a progress line can be
// rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
