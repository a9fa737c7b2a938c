package istio

// The Gateway API's view of a derivation: what each TCPRoute's parents
// say of it and how many routes each listener has, with the spec's
// condition types and reasons, for whoever reports them (the CLI's notes
// on one host, a status writer on Kubernetes).

// Condition types and reasons of a route's parent status, as the Gateway
// API names them.
const (
	CondAccepted     = "Accepted"
	CondResolvedRefs = "ResolvedRefs"

	ReasonAccepted              = "Accepted"
	ReasonNotAllowedByListeners = "NotAllowedByListeners"
	ReasonNoMatchingParent      = "NoMatchingParent"
	ReasonResolvedRefs          = "ResolvedRefs"
	ReasonBackendNotFound       = "BackendNotFound"
	ReasonRefNotPermitted       = "RefNotPermitted"
	ReasonInvalidKind           = "InvalidKind"
)

// Condition is one condition of a route's parent status.
type Condition struct {
	Type    string // CondAccepted, CondResolvedRefs
	Status  bool
	Reason  string
	Message string
}

// ParentStatus is what one parentRef of a route says: whether the parent
// took the route, and whether its backendRefs resolved.
type ParentStatus struct {
	Parent     Key    // the Gateway (or Service) the parentRef names
	Section    string // its sectionName, as given
	Port       uint16 // its port, as given (0: none)
	Conditions []Condition
}

// RouteStatus is a TCPRoute's status: one entry per parentRef.
type RouteStatus struct {
	Route   Key
	Parents []ParentStatus
}

// ListenerStatus is a Gateway listener's share of the routes: every route
// it accepted counts as attached; the oldest is the one served.
type ListenerStatus struct {
	Gateway        Key
	Name           string
	Port           uint16
	AttachedRoutes int
	Serves         Key // the route whose backends take its connections (zero: none)
}

// Accepted reports whether the parent took the route.
func (p ParentStatus) Accepted() bool { return p.condition(CondAccepted).Status }

// Reason is the reason of a condition type, "" when it is not set.
func (p ParentStatus) Reason(condType string) string { return p.condition(condType).Reason }

func (p ParentStatus) condition(t string) Condition {
	for _, c := range p.Conditions {
		if c.Type == t {
			return c
		}
	}
	return Condition{}
}
