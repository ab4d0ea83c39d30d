// Package dnsfilter is wardgate's DNS server: it answers the identities of
// the overlay on the gateway's overlay address, port 53, with per-identity
// views of the service names, forwards everything else to upstream
// resolvers, and learns the addresses behind FQDN egress rules.
//
// # The stage contract
//
// A query is first admitted by ServeDNS, then passed along a short chain of
// stages. Admission, in order:
//
//   - a response is dropped: answers are never answered;
//   - the identity is the source address of the query, mapped by
//     policy.IdentityByAddr; no policy or an unknown source: REFUSED;
//   - a per-identity token bucket (RatePerIdentity, Burst): REFUSED when
//     empty. Refused queries are counted, not logged one by one: a
//     dns.ratelimited event (identity, site, the last refused qname and
//     qtype, suppressed: how many, interval) comes with the first refusal,
//     then with the first query at least 10s after the last such event, so
//     a flood writes one line per identity per 10s and the count of its end
//     comes with the identity's next query;
//   - an opcode other than QUERY: NOTIMP; not exactly one question: FORMERR;
//     a class other than IN: REFUSED; an EDNS version other than 0: BADVERS;
//   - qtype ANY, AXFR, IXFR, MAILA, MAILB (and the meta types OPT, TSIG,
//     TKEY): REFUSED. RFC 8482 lets a server decline ANY; REFUSED is the
//     plainest way and leaks nothing.
//
// Every admitted query is a *query: the identity, the current policy view,
// the question name in lower case without the trailing dot, the type, and
// the request. Each stage has one method,
//
//	answer(ctx, *query) *dns.Msg
//
// that returns the reply, or nil to hand the query to the next stage. A stage
// must not modify the request or keep it after it returns, and a reply it
// returns is owned by the caller. The stages, in order:
//
//  0. quarantine (quarantine.go): an identity in quarantine
//     (Config.Quarantined) gets REFUSED for every name but those of the
//     services the policy keeps reachable in quarantine ([quarantine]
//     allow), which go on to the services stage like anyone's.
//  1. block (block.go): a name on a blocklist is NXDOMAIN, and a dns.block
//     audit event is always logged. Lists are plain domain lists or hosts
//     files ("0.0.0.0 name"); "#" starts a comment; an entry may be a
//     pattern "*.example.org" (exactly one more label) or "**.example.org"
//     (one or more); the apex is never implied.
//  2. services (services.go): the overlay domain is ours. NAME.DOMAIN and
//     each service's extra dns names answer the service's VIP (A, or AAAA
//     for a v6 VIP; the other type is NOERROR with no answer), authoritative,
//     TTL 60, but only to identities that policy.CanReach the service; to
//     anyone else the answer is NXDOMAIN, under DOMAIN byte for byte the one
//     a name that does not exist gets (with DOMAIN's SOA; an extra name
//     outside DOMAIN gets a bare NXDOMAIN). Other names under DOMAIN are
//     NXDOMAIN and never forwarded; the apex has only its SOA. So are the
//     reverse names (in-addr.arpa, ip6.arpa) of addresses in the overlay
//     and service prefixes.
//     Audit: a hidden service name is answered all the same when its flows
//     would be let through as flow.audit: when Auditing() (the gateway's
//     enforce = "audit"), or when policy.ReachDecision says only deny
//     rules with audit = true hide it. Such an answer is always logged as
//     dns.audit with the deny's rule (when one decided) and reason
//     (no-rule, deny-rule). A name hidden by an enforcing deny rule stays
//     NXDOMAIN unless the gateway is in audit mode.
//  3. forward (forward.go): everything else is forwarded to the upstreams
//     (UDP, retried over TCP when truncated, a per-try timeout, failover in
//     order starting at the upstream that last answered), through a bounded
//     cache that honours TTLs and caches negative answers (RFC 2308: the SOA
//     TTL or MINIMUM, whichever is less, at most 60s; 60s without an SOA).
//     Concurrent identical questions share one upstream exchange. A
//     question waiting on an upstream (leading an exchange or sharing one)
//     counts against its identity's share, MaxInflightPerIdentity; beyond
//     it that identity's question is SERVFAIL at once, the others'
//     unaffected; cached answers cost no share. Upstream exchanges in
//     flight are bounded over all identities too (1024; beyond: SERVFAIL).
//     Before a reply is cached, DNS rebinding is stripped from its answer
//     and additional sections (rebind.go):
//     A and AAAA records pointing into private space (RFC 1918, RFC 6598
//     100.64/10, ULA), loopback, link-local, unspecified, 0/8, the overlay
//     and service prefixes, NAT64 (64:ff9b::/96, and every RFC 6052
//     position in 64:ff9b:1::/48) or 6to4 (2002::/16) addresses embedding
//     such an IPv4 address, or at a service's endpoint addresses (public
//     ones too), unless the name matches an AllowInternal pattern; and,
//     whatever AllowInternal says, records owned by or CNAME/DNAME records
//     pointing to DOMAIN, its subdomains or a service's extra dns names
//     (an outside name must not alias an internal one). When stripping
//     leaves no address the reply is NOERROR with whatever else remains (a
//     CNAME, or nothing): the name exists, it just has nothing the client
//     may use. SERVFAIL when every upstream failed.
//
// After the forward stage, and before the reply is written (so that the
// client's next connection already finds it), FQDN egress learning
// (egress.go): when the identity can reach an egress service (or would but
// for audit, as for service names above) with a pattern matching the
// question name (the name the client asked, whatever CNAMEs the answer
// went through), the A and AAAA addresses of the reply are recorded as
// reachable by that identity through that service, for the record's TTL
// clamped to [EgressTTLMin, EgressTTLMax]. Filter.EgressService answers the flow
// handler from that table.
//
// Every reply then gets an OPT record when the request had one, is
// truncated to the client's UDP size over UDP, and is logged as dns.query
// when QueryLog is set (identity, site, qname, qtype, rcode; refused queries
// of known identities included, but for the rate-limited ones, counted in
// dns.ratelimited). A blocked query is logged once, as dns.block, with the
// same fields and rule, the blocklist entry that matched; an answer given
// for audit once, as dns.audit (above). A panic while answering one query
// is recovered and logged, and the query gets SERVFAIL.
//
// Over TCP (Serve) a connection is admitted by identity: one from an
// unknown source, or beyond TCPPerIdentity open ones of the same identity,
// is closed as soon as it is accepted. A connection's first query must
// come within Timeout, the next ones within TCPIdleTimeout, else it is
// closed. Malformed messages the miekg/dns server cannot parse get FORMERR
// when their header parses, and nothing otherwise (any reply to garbage
// could be used to amplify).
//
// # Defaults
//
// The zero Config works once Policy and Upstreams are set:
//
//	EgressTTLMin           30s    shortest time a learned egress address is allowed
//	EgressTTLMax           1h     longest time a learned egress address is allowed
//	MaxEgressPerIdentity   4096   learned addresses per identity; the oldest go first
//	RatePerIdentity        200    queries per second per identity, sustained
//	Burst                  400    queries per identity in a burst
//	CacheSize              10000  cached questions (LRU); negative: no cache
//	Timeout                2s     per try of one upstream
//	MaxInflightPerIdentity 64     upstream exchanges one identity waits on at once
//	TCPPerIdentity         16     open DNS-over-TCP connections per identity
//	TCPIdleTimeout         10s    a TCP connection idle that long after a query is closed
//	Auditing               nil    enforcing (the gateway passes its live enforce mode)
//	Audit, Logger          nil    discards (the gateway passes its audit and operational loggers)
//
// What it costs, in-process and through the tunnel, against Debian's
// unbound, is measured in docs/DEVELOPERS.md ("DNS filter throughput").
//
// # Wiring
//
// The gateway builds one Filter and serves it on its overlay address:
//
//	f, err := dnsfilter.New(dnsfilter.Config{
//		Policy:     current.Load, // func() *policy.Policy, e.g. an atomic.Pointer's Load
//		Upstreams:  cfg.DNS.Upstream,
//		Blocklists: cfg.DNS.Blocklists,
//		Audit:      auditLogger,
//		Logger:     logger,
//		Auditing:   auditing.Load, // enforce = "audit", live
//	})
//	go f.Serve(ctx, udpConn, tcpListener) // gVisor listeners on SITE_ADDRESS:53
//
// and in the flow handler, for a destination that matched no service:
//
//	svc := f.EgressService(id, dst.Addr(), dst.Port(), proto) // nil: deny, no-service
//
// Stats gives running totals for the metrics endpoint.
//
// A Filter starts no goroutines of its own (those of Serve end before it
// returns), and
// nothing needs closing.
//
// # Reload
//
// The policy is read through Config.Policy on every query, so a policy
// reload takes effect at once; answers already in the forward cache were
// stripped against the policy at that time (its prefixes, domain, service
// names and endpoints). Blocklists are read with LoadBlocklists (which
// changes nothing, and fails with file:line) and put in force with
// SetBlocklists, which keeps the cache and the learned egress addresses.
// Upstreams, AllowInternal, QueryLog and the egress TTLs are compiled with
// CompileSettings and put in force with SetSettings, which empties the
// cache when the upstreams or AllowInternal change; the other fields of
// Config are fixed at New.
package dnsfilter
