package gateway

import (
	"net"

	"github.com/wardgate/wardgate/overlay"
	"github.com/wardgate/wardgate/policy"
)

// handleTCP is the overlay's TCP handler: a new connection from a client
// here, or from another site's client whose gateway relayed it, enters
// the flow pipeline (pipeline.go) in the forwarder's goroutine.
func (g *Gateway) handleTCP(r *overlay.TCPRequest) {
	if g.closing.Load() {
		r.Reject()
		return
	}
	v := g.classifyOverlay(g.state.Load(), r.Src, r.Dst, policy.ProtoTCP)
	if reason := g.unrelayed(v); reason != "" {
		g.logDecision(v, nil, reason)
		r.Reject()
		return
	}
	cs := overlayTCP{r}
	if f := g.admit(v, cs); f != nil {
		g.serve(v, f, cs)
	}
}

// overlayTCP is the client side of an overlay TCP flow: a SYN that waits
// for its SYN-ACK (accept) or reset (refuse).
type overlayTCP struct{ r *overlay.TCPRequest }

func (c overlayTCP) refuse()                   { c.r.Reject() }
func (c overlayTCP) accept() (net.Conn, error) { return c.r.Accept() }
func (c overlayTCP) abandon()                  { c.r.Abandon() }
