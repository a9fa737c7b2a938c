// Package status writes back what the agent made of the Istio and Gateway
// API objects: the Gateway API's conditions on TCPRoutes, Gateways and
// GatewayClasses, Istio's status on VirtualServices and DestinationRules,
// and an Event on each object left out. Every agent computes it; only the
// holder of a Lease writes it, and only what differs from the object.
package status

import (
	"github.com/tcpshift/tcpshift/config/istio"
)

// ControllerName is the GatewayClass controllerName tcpshift answers for:
// Gateways of such a class, and the routes attached to them, get its status.
const ControllerName = "tcpshift.io/gateway-controller"

// FieldManager names tcpshift's writes in the objects' managedFields.
const FieldManager = "tcpshift"

// Object is what the agent's informers keep of an object for its status:
// enough to compare and to name it in an Event.
type Object struct {
	Key        istio.Key // group/kind, namespace, name
	APIVersion string
	UID        string
	Generation int64
	Status     map[string]any // as the API server last showed it (nil: none)
	// Gateways only: spec.gatewayClassName and the listeners.
	Class     string
	Listeners []Listener
}

// Listener is a Gateway listener's name and protocol.
type Listener struct {
	Name     string
	Protocol string
}

// Input is one applied derivation: the Gateway API's verdicts and the
// objects left out.
type Input struct {
	Routes    []istio.RouteStatus
	Listeners []istio.ListenerStatus
	Rejected  []istio.Rejection
	// Listening are the gateway ports this node's proxy listens on.
	Listening map[uint16]bool
}

// GatewayClass is a GatewayClass as the writer lists it.
type GatewayClass struct {
	Name       string
	Controller string
	Generation int64
	Status     map[string]any
}
