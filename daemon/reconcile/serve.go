package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves h on addr, listening where inNS runs it, until stop is
// called: a reconciler's metrics or health endpoint. flag names the
// address in errors (--metrics-addr); the log says what listens and where.
func Serve(flag, addr, what, paths string, h http.Handler, inNS func(func() error) error, log *slog.Logger) (stop func(), err error) {
	var ln net.Listener
	if err := inNS(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" server", "err", err)
		}
	}()
	log.Info(what+" listening", "addr", ln.Addr().String(), "paths", paths)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
