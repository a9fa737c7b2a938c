package daemon

import (
	"log/slog"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// What the daemon tells systemd (Type=notify): ready once the file is
// applied and metrics are served, stopping when it ends.
const (
	sdReady    = sd.SdNotifyReady
	sdStopping = sd.SdNotifyStopping
)

// notify sends state to systemd when it started the daemon (NOTIFY_SOCKET
// set); otherwise it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("notify systemd", "state", state, "err", err)
	}
}
