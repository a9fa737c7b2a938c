package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/userspace"
)

func proxyCommand() *cli.Command {
	return &cli.Command{
		Name:      "proxy",
		Usage:     "apply a route config and run the userspace proxy for its proxy-mode services",
		ArgsUsage: " ",
		Description: "Runs in the foreground until SIGINT or SIGTERM. Services in mode proxy (or mode\n" +
			"auto where the kernel paths cannot serve) are forwarded by one event loop (read\n" +
			"and write, splice(2) for bulk), split by the same weight tables as the kernel:\n" +
			"set-weight reaches the proxy at once.\n" +
			"Where BPF cannot load (not root, an old kernel) or with --no-bpf, the proxy\n" +
			"serves every service of the file from the file alone; weights then change\n" +
			"with the file, not with set-weight.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "route config `FILE` (YAML)"},
			&cli.BoolFlag{Name: "no-bpf", Usage: "do not use BPF at all: split in the proxy, from the file"},
		}, append(proxyFlags(""), logFlags()...)...),
		OnUsageError: usageError,
		Action:       runProxy,
	}
}

func runProxy(c *cli.Context) error {
	if err := needFile(c); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return errors.New("proxy takes no arguments (the config goes in -f FILE)")
	}
	if err := checkProxyFlags(c); err != nil {
		return err
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	cfg, err := config.Load(c.String("file"))
	if err != nil {
		return err
	}

	opts := userspace.Options{
		DialTimeout: c.Duration("dial-timeout"),
		Attempts:    c.Int("attempts"),
		Log:         log,
	}
	var svcs []*maps.Service
	why := noBPF(c.Bool("no-bpf"))
	if why != "" {
		if svcs, err = loader.StaticServices(cfg, why); err != nil {
			return err
		}
		if opts.Source, err = userspace.NewStaticSource(svcs); err != nil {
			return err
		}
		if c.IsSet("netns") {
			ns, err := loader.OpenNamespace(c.String("netns"))
			if err != nil {
				return err
			}
			defer ns.Close()
			opts.InNamespace = ns.Do
		}
	} else {
		tg, err := target(c)
		if err != nil {
			return err
		}
		defer tg.Close()
		changes, err := tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{})
		printChanges(c.App.Writer, changes, false)
		if err != nil {
			return err
		}
		set, err := tg.Maps()
		if err != nil {
			return err
		}
		defer set.Close()
		if svcs, err = set.ServiceList(); err != nil {
			return err
		}
		opts.Source = userspace.NewKernelSource(set)
		if c.IsSet("netns") {
			opts.InNamespace = tg.NS.Do
		}
	}

	p := userspace.New(opts)
	served := 0
	for _, svc := range svcs {
		log.Info("service", "name", svc.Name, "listen", svc.Frontend.String(), "mode", loader.ModeName(svc.Mode), "reason", svc.Reason)
		if svc.Mode != maps.ModeProxy {
			continue
		}
		if err := p.Listen(userspace.Service{ID: svc.ID, Name: svc.Name, Frontend: svc.Frontend}); err != nil {
			p.Shutdown(context.Background())
			return err
		}
		served++
	}
	if served == 0 {
		return fmt.Errorf("%s has no service in proxy mode: the kernel serves them all (see tcpshift status)", cfg.Path)
	}

	<-c.Context.Done()
	log.Info("shutting down", "grace", c.Duration("grace").String())
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("grace"))
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Warn("closed connections that outlived the grace period", "err", err)
	}
	return nil
}

// noBPF says why the proxy must serve without BPF, or "" when it need not.
func noBPF(flag bool) string {
	if flag {
		return "--no-bpf"
	}
	if err := loader.BPFAvailable(); err != nil {
		return err.Error()
	}
	return ""
}
