package gateway

import (
	"context"

	"github.com/wardgate/wardgate/dnsfilter"
	"github.com/wardgate/wardgate/policy"
)

// The DNS filter on the gateway's overlay address: its configuration from
// gateway.toml's [dns] and its lifecycle.

// startDNS serves dnsfilter on the gateway's overlay address, port 53,
// inside the stack: never on the host's own interfaces.
func (g *Gateway) startDNS() error {
	f, err := dnsfilter.New(g.dnsConfig(g.cfg))
	if err != nil {
		return err
	}
	pc, err := g.overlay.ListenUDP(53)
	if err != nil {
		return err
	}
	ln, err := g.overlay.ListenTCP(53)
	if err != nil {
		pc.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.dns, g.dnsStop, g.dnsDone = f, cancel, make(chan struct{})
	g.egress = f.EgressService
	go func() {
		defer close(g.dnsDone)
		if err := f.Serve(ctx, pc, ln); err != nil {
			g.log.Error("dns server stopped", "err", err)
		}
	}()
	return nil
}

// dnsConfig is the filter's configuration from cfg's [dns]; a reload puts
// its Settings in force (dnsfilter.CompileSettings).
func (g *Gateway) dnsConfig(cfg *Config) dnsfilter.Config {
	d := cfg.DNS
	return dnsfilter.Config{
		Policy:          func() *policy.Policy { return g.state.Load().pol },
		Self:            g.state.Load().site.Address,
		Upstreams:       d.Upstream,
		Blocklists:      cfg.paths(d.Blocklists),
		AllowInternal:   d.AllowInternal,
		EgressTTLMin:    d.EgressTTLMin,
		EgressTTLMax:    d.EgressTTLMax,
		QueryLog:        *d.QueryLog,
		RatePerIdentity: d.RatePerIdentity,
		Burst:           int(2 * d.RatePerIdentity),
		Audit:           g.audit,
		Logger:          g.log,
		Auditing:        g.auditing.Load,
		Quarantined:     func(id *policy.Identity) bool { return g.quar.has(id.Name) },
	}
}

func (g *Gateway) stopDNS() {
	if g.dnsStop != nil {
		g.dnsStop()
		<-g.dnsDone
		g.dnsStop = nil
	}
}
