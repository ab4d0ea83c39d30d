package enroll

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/policy"
)

// Keepalive is the PersistentKeepalive of rendered client configs: clients
// are usually behind NAT, and the gateway cannot reach them first.
const Keepalive = 25

// ClientConfig is what a wg-quick client of one identity needs.
type ClientConfig struct {
	Identity   string
	PrivateKey wgkey.Private // zero: the client keeps its own; a comment says to fill it in
	Address    netip.Addr
	DNS        netip.Addr // the home site's overlay address
	SiteName   string
	SiteKey    wgkey.Public
	Endpoint   string // "" when the site has none in the policy
	AllowedIPs []netip.Prefix
}

// ClientFor builds the client config of identity name homed at its site:
// the site's key, endpoint and overlay address (DNS is served there), and
// AllowedIPs from AllowedIPs.
func ClientFor(p *policy.Policy, name string, priv wgkey.Private) (*ClientConfig, error) {
	id := p.Identity(name)
	if id == nil {
		return nil, fmt.Errorf("no identity %q", name)
	}
	if id.IsLAN() {
		return nil, fmt.Errorf("identity %q is a LAN device (source %s): it has no WireGuard config", name, id.Source)
	}
	site := p.Site(id.Site)
	if site == nil {
		return nil, fmt.Errorf("identity %q: unknown site %q", name, id.Site)
	}
	return &ClientConfig{
		Identity: id.Name, PrivateKey: priv, Address: id.Address, DNS: site.Address,
		SiteName: site.Name, SiteKey: site.Key, Endpoint: site.Endpoint,
		AllowedIPs: AllowedIPs(p, id),
	}, nil
}

// AllowedIPs is what a client routes into the tunnel: the overlay prefix
// (the gateways, DNS), the service prefix (VIPs), and the LAN prefixes of
// the endpoints of every service the identity may reach (policy.CanReach),
// so that a real backend address works too. Loopback, link-local and
// unspecified endpoints are left out (they mean something else on the
// client), and so are prefixes already covered by another one. The LAN
// prefixes come sorted, after the two overlay prefixes.
func AllowedIPs(p *policy.Policy, id *policy.Identity) []netip.Prefix {
	ov := p.Overlay()
	base := []netip.Prefix{ov.Prefix.Masked(), ov.ServicePrefix.Masked()}
	var lan []netip.Prefix
	for _, svc := range p.Services() {
		if !p.CanReach(id, svc) {
			continue
		}
		for _, ep := range svc.Endpoints {
			a := ep.Prefix.Addr()
			if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() {
				continue
			}
			lan = append(lan, ep.Prefix.Masked())
		}
	}
	slices.SortFunc(lan, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	lan = slices.Compact(lan)
	out := base
	for _, pf := range lan {
		covered := false
		for _, o := range append(slices.Clone(base), lan...) {
			if o != pf && o.Bits() <= pf.Bits() && o.Contains(pf.Addr()) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, pf)
		}
	}
	return out
}

// Render writes the config in wg-quick format. Without a private key the
// PrivateKey line is a comment telling the user to fill it in on the
// client (the private key never has to leave it). Without an endpoint the
// Endpoint line is a comment to fill in.
func (c *ClientConfig) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# wardgate client config for %s (site %s)\n", c.Identity, c.SiteName)
	b.WriteString("[Interface]\n")
	if c.PrivateKey.IsZero() {
		b.WriteString("# PrivateKey = fill in this client's own private key (the one whose public key was enrolled)\n")
	} else {
		fmt.Fprintf(&b, "PrivateKey = %s\n", c.PrivateKey.Base64())
	}
	bits := 32
	if c.Address.Is6() {
		bits = 128
	}
	fmt.Fprintf(&b, "Address = %s/%d\n", c.Address, bits)
	fmt.Fprintf(&b, "DNS = %s\n", c.DNS)
	b.WriteString("\n[Peer]\n")
	fmt.Fprintf(&b, "# the %s gateway\n", c.SiteName)
	fmt.Fprintf(&b, "PublicKey = %s\n", c.SiteKey)
	if c.Endpoint != "" {
		fmt.Fprintf(&b, "Endpoint = %s\n", c.Endpoint)
	} else {
		b.WriteString("# Endpoint = fill in HOST:PORT of the gateway (its [[site]] has no endpoint)\n")
	}
	ips := make([]string, len(c.AllowedIPs))
	for i, p := range c.AllowedIPs {
		ips[i] = p.String()
	}
	fmt.Fprintf(&b, "AllowedIPs = %s\n", strings.Join(ips, ", "))
	fmt.Fprintf(&b, "PersistentKeepalive = %d\n", Keepalive)
	return b.String()
}
