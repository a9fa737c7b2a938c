//go:build k8s

package k8s

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// agentProfile saves one of the agent's profiles (name: "heap",
// "profile?seconds=20") into TCPSHIFT_K8S_PROFILE_DIR as file, when the
// directory is set and the agent serves its profiles (TCPSHIFT_PPROF in
// the environment the test gives it). Measuring, not checking: a profile
// that cannot be had is logged.
func agentProfile(t *testing.T, name, file string) {
	dir, addr := os.Getenv("TCPSHIFT_K8S_PROFILE_DIR"), os.Getenv("TCPSHIFT_PPROF")
	if dir == "" || addr == "" {
		return
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/%s", addr, name))
	if err != nil {
		t.Logf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), b, 0o644)
	}
	if err != nil {
		t.Logf("profile %s: %v", name, err)
	}
}
