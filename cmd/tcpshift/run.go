package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/daemon"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run as a service: apply a route config and keep the kernel in step with it",
		ArgsUsage: " ",
		Description: "Applies FILE, then re-applies it whenever it changes (or on SIGHUP). Every -f\n" +
			"(a file, or a directory's .yaml/.yml/.json files) may hold tcpshift's route\n" +
			"config and Istio or Gateway API objects, as apply takes them; together they\n" +
			"are the whole truth (objects applied from the CLI that they lack are removed).\n" +
			"Input that does not validate or apply is refused with one log line and the metric\n" +
			"tcpshift_config_reload_failures_total; the last good one stays in force.\n" +
			"It follows each path, not the inode it first saw: a file or directory replaced by\n" +
			"rename or symlink swap (Kubernetes ConfigMap ..data) is picked up, with a log line.\n" +
			"A file written in place is read once its writer closed it and 100ms passed\n" +
			"quietly (1s at most). A file that would drop a service, a subset or a weighted\n" +
			"route in force (half-written?) is held: logged, counted in\n" +
			"tcpshift_config_suspect_total, and applied once unchanged for 3s; SIGHUP applies\n" +
			"it at once (the way to say the drop is meant).\n" +
			"Also: gives restarted lookup-mode backends' new listeners their connections\n" +
			"back, runs the health checks the file asks for, serves proxy-mode services,\n" +
			"and exports Prometheus metrics (and /healthz, /readyz with --health-addr).\n" +
			"SIGINT or SIGTERM stop it and leave the kernel\n" +
			"state in place: connections keep flowing, a new `run` adopts the state, and\n" +
			"`tcpshift down` removes it. Logs are structured (log/slog) on stderr.\n" +
			"Backends not listening yet do not stop it: they are registered once they listen.\n" +
			"While it runs it owns the namespace: apply and down from the CLI are refused\n" +
			"(--force overrides; the daemon logs it), and set-weight is a runtime override\n" +
			"that lasts until the service's route in FILE changes, or SIGHUP. It tells\n" +
			"systemd when it is ready (Type=notify).",
		Flags: append(append([]cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "route config or Istio objects: a `FILE` or a directory, watched for changes (repeat for more)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9090); off when empty"},
			&cli.StringFlag{Name: "health-addr", Usage: "serve /healthz and /readyz (ready once the file is applied) at `ADDR`; off when empty"},
		}, logFlags()...), proxyFlags("proxy mode: ")...),
		OnUsageError: usageError,
		Action:       runDaemon,
	}
}

func runDaemon(c *cli.Context) error {
	if err := needFile(c); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return errors.New("run takes no arguments (the config goes in -f FILE)")
	}
	if err := checkProxyFlags(c); err != nil {
		return err
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
		Paths:       c.StringSlice("file"),
		Target:      tg,
		MetricsAddr: c.String("metrics-addr"),
		HealthAddr:  c.String("health-addr"),
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
