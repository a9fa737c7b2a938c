package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpshift/tcpshift/userspace"
)

// proxyFlags are the userspace proxy's settings, shared by proxy and run;
// prefix says where they apply ("" or "proxy mode: ").
func proxyFlags(prefix string) []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "dial-timeout", Value: userspace.DefaultDialTimeout, Usage: prefix + "give up on an endpoint's connect after this long"},
		&cli.IntFlag{Name: "attempts", Value: userspace.DefaultAttempts, Usage: prefix + "endpoints tried per client connection before it is refused"},
		&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: prefix + "on stop, how long open connections may finish"},
	}
}

// checkProxyFlags refuses proxy settings that could never work.
func checkProxyFlags(c *cli.Context) error {
	if c.Int("attempts") < 1 {
		return fmt.Errorf("--attempts %d: must be at least 1", c.Int("attempts"))
	}
	if c.Duration("dial-timeout") <= 0 {
		return fmt.Errorf("--dial-timeout %s: must be above 0", c.Duration("dial-timeout"))
	}
	return nil
}

// logFlags choose what newLogger makes.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
	}
}

// newLogger makes the slog logger --log-level and --log-format ask for,
// writing to stderr.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
}

// needFile is the one-line error for a command run without -f FILE
// (urfave's Required would print the whole help first).
func needFile(c *cli.Context) error {
	// urfave's String of a slice flag is not its value: ask whether it was
	// given at all, then whether what was given is empty.
	if !c.IsSet("file") || c.String("file") == "" && len(c.StringSlice("file")) == 0 {
		return fmt.Errorf("%s needs -f FILE (the route config; - reads stdin)", c.Command.Name)
	}
	return nil
}
