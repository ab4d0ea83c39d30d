package dnsfilter

import (
	"context"
	"net/netip"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/policy"
)

// serviceTTL is the TTL of service answers and of the overlay domain's SOA.
const serviceTTL = 60

// serviceStage answers the overlay domain and the services' extra dns
// names from the policy; see the package documentation.
type serviceStage struct {
	auditing func() bool // the gateway is in audit mode
	self     netip.Addr  // the gateway's address: the console's, which has no VIP
}

func (s serviceStage) answer(_ context.Context, q *query) *dns.Msg {
	ov := q.view.Overlay()
	if a, ok := reverseAddr(q.name); ok && (ov.Prefix.Contains(a) || ov.ServicePrefix.Contains(a)) {
		// Reverse names of overlay addresses are ours too: never forwarded,
		// and nothing to tell.
		m := new(dns.Msg)
		m.SetRcode(q.req, dns.RcodeNameError)
		m.Authoritative = true
		m.RecursionAvailable = true
		return m
	}
	domain := dnsname.Canonical(ov.Domain)
	inDomain := dnsname.Under(q.name, domain)
	svc := q.view.ServiceByName(q.name)
	if svc == nil && !inDomain {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(q.req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if svc != nil && !q.view.CanReach(q.id, svc) {
		// Hidden by policy; answered anyway when the flows would be let
		// through (audit mode, or only deny rules in roll-out hide it),
		// which they never are to the console.
		if d := q.view.ReachDecision(q.id, svc); (d.Audit || s.auditing()) && svc.Name != policy.ConsoleService {
			q.audit = &d
		} else {
			svc = nil
		}
	}
	if svc == nil {
		if q.name == domain { // the apex exists and has nothing but its SOA
			return apexReply(m, q, domain)
		}
		m.Rcode = dns.RcodeNameError
		if inDomain {
			m.Ns = []dns.RR{soa(domain)}
		}
		return m
	}
	vip := svc.VIP.Unmap()
	if svc.Name == policy.ConsoleService {
		vip = s.self.Unmap() // every gateway serves its own console
	}
	hdr := dns.RR_Header{Name: q.req.Question[0].Name, Class: dns.ClassINET, Rrtype: q.qtype, Ttl: serviceTTL}
	switch {
	case q.qtype == dns.TypeA && vip.Is4():
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: vip.AsSlice()}}
	case q.qtype == dns.TypeAAAA && vip.Is6():
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: vip.AsSlice()}}
	default: // NODATA: the name exists, not with this type
		if inDomain {
			m.Ns = []dns.RR{soa(domain)}
		}
	}
	return m
}

func apexReply(m *dns.Msg, q *query, domain string) *dns.Msg {
	if q.qtype == dns.TypeSOA {
		m.Answer = []dns.RR{soa(domain)}
	} else {
		m.Ns = []dns.RR{soa(domain)}
	}
	return m
}

// soa is the synthetic SOA of the overlay domain, served with negative
// answers so that clients cache them for serviceTTL.
func soa(domain string) dns.RR {
	fq := dns.Fqdn(domain)
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: fq, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: serviceTTL},
		Ns:      "ns." + fq,
		Mbox:    "hostmaster." + fq,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  serviceTTL,
	}
}
