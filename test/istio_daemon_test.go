package test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/internal/testenv"
)

// wantGateway makes 10 connections to the task's gateway port.
func wantGateway(t *testing.T, env *testenv.Env, want map[string]int) {
	t.Helper()
	if got := env.Count("127.0.0.1:31400", 10); !maps.Equal(got, want) {
		t.Fatalf("10 connections to the gateway port: %v, want %v", got, want)
	}
}

func readExample(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "istio", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// tcpshift run follows a directory of Istio objects as the whole truth:
// the task's steps are edits of the directory's files.
func TestDaemonFollowsIstioDirectory(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "workloads.yaml"), readExample(t, "workloads.yaml"))
	task := filepath.Join(dir, "task.yaml")
	writeConfig(t, task, readExample(t, "tcp-echo-all-v1.yaml"))
	d := startDaemon(t, env, dir, "")
	wantGateway(t, env, map[string]int{"one": 10})

	// The 80/20 VirtualService in place of the all-v1 one (same object).
	allV1 := readExample(t, "tcp-echo-all-v1.yaml")
	gwAndDR := allV1[:strings.LastIndex(allV1, "---")]
	writeConfig(t, task, gwAndDR+"---\n"+readExample(t, "tcp-echo-20-v2.yaml"))
	d.waitLog(t, `msg="route config applied"`, 1)
	wantGateway(t, env, map[string]int{"one": 8, "two": 2})

	// Without the VirtualService no service is derived: the port closes.
	writeConfig(t, task, gwAndDR)
	d.waitLog(t, `msg="route config applied"`, 2)
	if _, err := env.Ask("127.0.0.1:31400"); err == nil {
		t.Fatal("the gateway port answers with no VirtualService left")
	}
}
