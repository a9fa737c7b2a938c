package agent

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
	"github.com/tcpshift/tcpshift/daemon/agent/status"
)

// startStatus starts the status writer (--status): every agent offers it
// its results, the Lease holder writes them.
func (a *agent) startStatus(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface) {
	if !a.o.Status {
		return
	}
	// Its own client: client-go's default 5 requests a second, shared
	// with the informers, made a write wait 200 ms behind the Lease's.
	wcfg := rest.CopyConfig(cfg)
	wcfg.QPS, wcfg.Burst = 50, 100
	dc, err := dynamic.NewForConfig(wcfg)
	if err != nil {
		a.o.Log.Error("status writer not started", "err", err)
		return
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	go func() { <-ctx.Done(); b.Shutdown() }()
	resources := map[string]schema.GroupVersionResource{}
	for _, gvr := range a.watch.routeGVRs {
		resources[kindOf(gvr)] = gvr
	}
	var classes func() []*status.GatewayClass
	if a.watch.classes != nil {
		classes = a.watch.statusClasses
	}
	a.status = status.New(status.Options{Dynamic: dc, Kube: cs, Objects: a.watch.statusObjects, Classes: classes, Resources: resources,
		Recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "tcpshift", Host: a.o.Node}),
		Identity: a.o.Node, LeaseNamespace: a.o.LeaseNamespace, LeaseDuration: a.o.LeaseDuration, Log: a.o.Log})
	a.statusDone = make(chan struct{})
	go func() {
		defer close(a.statusDone)
		if err := a.status.Run(ctx); err != nil {
			a.o.Log.Error("status writer stopped", "err", err)
		}
	}()
}

// waitStatus lets a stopping agent give the Lease up (bounded), so another
// writes at once rather than after the lease duration.
func (a *agent) waitStatus() {
	if a.statusDone == nil {
		return
	}
	select {
	case <-a.statusDone:
	case <-time.After(5 * time.Second):
		a.o.Log.Warn("status writer did not give the Lease up; another agent takes it when it expires")
	}
}

// offerStatus hands an applied derivation to the status writer.
func (a *agent) offerStatus(res *kube.Result, rejected []istio.Rejection, listening map[uint16]bool) {
	if a.status != nil {
		a.status.Offer(status.Input{Routes: res.Routes, Listeners: res.Listeners, Rejected: append(rejected, res.Rejected...), Listening: listening})
	}
}

// kindOf names a route resource as istio.Key does (group/Kind).
func kindOf(gvr schema.GroupVersionResource) string {
	for _, k := range []string{"VirtualService", "DestinationRule", "ServiceEntry", "WorkloadEntry", "TCPRoute", "Gateway"} {
		if strings.ToLower(k)+"s" == gvr.Resource || strings.ToLower(k)+"es" == gvr.Resource {
			return gvr.Group + "/" + k
		}
	}
	return gvr.Group + "/" + gvr.Resource
}
