package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"
)

// releaseFirstSync hands back to the system the memory the first sync
// used and no longer holds: deriving and planning every Service (and
// reading back every service in force) leaves garbage several times the
// size of what stays, which the collector frees but the runtime returns
// to the system only slowly. One collection, once.
func releaseFirstSync() {
	debug.FreeOSMemory()
}

// servePprof serves Go's profiles (net/http/pprof) at the address in
// TCPSHIFT_PPROF, if set, for measuring the agent at scale (a heap profile
// after the first sync, a CPU profile during changes); off by default, and
// meant for a loopback address.
func servePprof(ctx context.Context, log *slog.Logger) {
	addr := os.Getenv("TCPSHIFT_PPROF")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("TCPSHIFT_PPROF: not serving profiles", "addr", addr, "err", err)
		}
	}()
	log.Info("serving profiles (TCPSHIFT_PPROF)", "addr", addr)
}
