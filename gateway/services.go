package gateway

import (
	"github.com/wardgate/wardgate/policy"
)

// ServiceInfo is one service as `wardgate services` and the admin API's
// status show it: where clients reach it and where the gateway sends it.
type ServiceInfo struct {
	Name      string   `json:"name"`
	Site      string   `json:"site,omitempty"` // "" for an egress service
	VIP       string   `json:"vip,omitempty"`  // "" for an egress service
	Ports     []string `json:"ports"`          // "443/tcp", "5000-5010/udp"
	DNS       []string `json:"dns"`            // the names DNS answers for it: NAME.DOMAIN, then its dns names
	Endpoints []string `json:"endpoints,omitempty"`
	Egress    []string `json:"egress,omitempty"` // FQDN patterns of an egress service
}

// Services lists the policy's services in file order.
func Services(p *policy.Policy) []ServiceInfo {
	domain := p.Overlay().Domain
	out := make([]ServiceInfo, 0, len(p.Services()))
	for _, svc := range p.Services() {
		si := ServiceInfo{Name: svc.Name, Site: svc.Site, Ports: []string{}, DNS: []string{}, Egress: svc.Egress}
		if svc.VIP.IsValid() {
			si.VIP = svc.VIP.String()
		}
		for _, r := range svc.Ports {
			si.Ports = append(si.Ports, r.String())
		}
		if domain != "" && !svc.IsEgress() {
			si.DNS = append(si.DNS, svc.Name+"."+domain)
		}
		si.DNS = append(si.DNS, svc.DNS...)
		for _, ep := range svc.Endpoints {
			si.Endpoints = append(si.Endpoints, endpointString(ep))
		}
		out = append(out, si)
	}
	return out
}

// endpointString writes an endpoint in policy.toml's notation, always with
// its protocol: "127.0.0.10:8443/tcp", "192.168.5.0/24:8000-8010/udp",
// "[fd00::/64]:443/tcp".
func endpointString(ep policy.Endpoint) string {
	host := ep.Prefix.String()
	if ep.Prefix.IsSingleIP() {
		host = ep.Prefix.Addr().String()
	}
	if ep.Prefix.Addr().Is6() {
		host = "[" + host + "]"
	}
	return host + ":" + ep.Ports.String()
}
