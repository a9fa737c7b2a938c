//go:build k8s

// Package k8s holds the end-to-end tests against a real kube-apiserver and
// simulated nodes and pods (make k8s-test).
package k8s

import (
	"testing"

	"github.com/tcpshift/tcpshift/test/k8s/nodes"
)

// TestMain runs the tests in a network and mount namespace of their own.
func TestMain(m *testing.M) { nodes.Main(m) }
