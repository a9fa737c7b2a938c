package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/daemon"
	"github.com/tcpshift/tcpshift/userspace"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run as a service: apply a route config and keep the kernel in step with it",
		ArgsUsage: " ",
		Description: "Applies FILE, then re-applies it whenever it changes (or on SIGHUP). A file that\n" +
			"does not validate or apply is refused with one log line and the metric\n" +
			"tcpshift_config_reload_failures_total; the last good one stays in force.\n" +
			"Also: gives restarted lookup-mode backends' new listeners their connections\n" +
			"back, runs the health checks the file asks for, serves proxy-mode services,\n" +
			"and exports Prometheus metrics. SIGINT or SIGTERM stop it and leave the kernel\n" +
			"state in place: connections keep flowing, a new `run` adopts the state, and\n" +
			"`tcpshift down` removes it. Logs are structured (log/slog) on stderr.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "route config `FILE` (YAML), watched for changes"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9090); off when empty"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
			&cli.DurationFlag{Name: "dial-timeout", Value: userspace.DefaultDialTimeout, Usage: "proxy mode: give up on an endpoint's connect after this long"},
			&cli.IntFlag{Name: "attempts", Value: userspace.DefaultAttempts, Usage: "proxy mode: endpoints tried per client connection before it is refused"},
			&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: "proxy mode: on stop, how long open connections may finish"},
		},
		OnUsageError: usageError,
		Action:       runDaemon,
	}
}

func runDaemon(c *cli.Context) error {
	if c.NArg() > 0 {
		return errors.New("run takes no arguments (the config goes in -f FILE)")
	}
	if c.Int("attempts") < 1 {
		return fmt.Errorf("--attempts %d: must be at least 1", c.Int("attempts"))
	}
	if c.Duration("dial-timeout") <= 0 {
		return fmt.Errorf("--dial-timeout %s: must be above 0", c.Duration("dial-timeout"))
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	tg, err := target(c)
	if err != nil {
		return err
	}
	defer tg.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	o := daemon.Options{
		Path:        c.String("file"),
		Target:      tg,
		MetricsAddr: c.String("metrics-addr"),
		DialTimeout: c.Duration("dial-timeout"),
		Attempts:    c.Int("attempts"),
		Grace:       c.Duration("grace"),
		Reload:      hup,
		Log:         log,
	}
	if c.IsSet("netns") {
		o.InNamespace = tg.NS.Do
	}
	return daemon.Run(c.Context, o)
}

// newLogger makes the slog logger --log-level and --log-format ask for.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text", "":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
}
