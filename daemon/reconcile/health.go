package reconcile

import (
	"fmt"
	"net/http"
)

// HealthHandler answers /healthz (the process is alive) and /readyz (ready
// once a sync applied the input, 503 before).
func (l *Loop) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !l.Ready() {
			http.Error(w, "first sync not applied yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// ServeHealth serves HealthHandler on addr (--health-addr), listening
// where inNS runs it, until stop is called.
func (l *Loop) ServeHealth(addr string, inNS func(func() error) error) (stop func(), err error) {
	return Serve("--health-addr", addr, "health", "/healthz /readyz", l.HealthHandler(), inNS, l.log)
}
