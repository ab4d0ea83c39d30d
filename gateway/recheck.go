package gateway

import "time"

// recheckEvery is how often live flows are decided again with the policy in
// force: a rule's time window that closes, or a grant that expires, ends
// the flows it allowed within this long (flow.revoked, reason
// outside-time-window or expired). The same pass catches a flow that was
// decided with the old policy just before a reload's swap but registered
// after the reload's own revocation pass. Deciding is tens of nanoseconds,
// so even 10,000 live flows cost well under a millisecond a second.
const recheckEvery = time.Second

// recheckFlows runs until stop is closed.
func (g *Gateway) recheckFlows(stop <-chan struct{}) {
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		g.reloadMu.Lock()
		if n := g.revoke(g.state.Load()); n > 0 {
			g.log.Info("live flows ended: no longer allowed at this time", "revoked", n)
		}
		g.reloadMu.Unlock()
	}
}
