//go:build tools

// Package tools pins the Kubernetes commands the tests build; the build tag keeps
// it out of every build, go mod tidy still records what they need.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
