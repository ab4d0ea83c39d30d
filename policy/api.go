// Package policy owns wardgate's policy: the policy.toml schema, strict
// loading with file:line errors, validation, compilation into decision
// tables, Decide, and the [[test]] runner.
//
// A *Policy is an immutable value: load, validate and compile a new one, then
// swap it in atomically. It does no I/O beyond reading its file and knows
// nothing of sockets or WireGuard.
//
// # Semantics
//
// Default deny. An allow rule grants; a deny rule wins over every allow,
// whatever the order of the file. A rule applies to a flow when its `from`
// names the identity (by name, "group:NAME", "site:NAME" for everything
// homed at that site, LAN identities included, or "*"), its `to` names the
// service (or "*"), the port is one of its `ports` (a rule without ports
// covers every port the service offers, ICMP echo included; a rule's ports
// that the service does not offer grant nothing there), its `when`
// window, if any, is open, and its `expires`, if any, has not come. A flow to a port the service does not offer is
// denied with no-service before any rule is looked at. A deny rule with a
// `when` denies only inside its window. An allow rule that would match but
// for its window gives outside-time-window when nothing else allows; one
// that would match (window open) but has expired gives expired, which wins
// over outside-time-window. An expired deny rule denies nothing.
//
// When several rules could decide, the one named in the Decision does not
// depend on their order: among deny rules, those without audit come first,
// then the smallest name; among allow rules one that never expires, else
// the one expiring last, then the smallest name (so Decision.Expires is
// when the flow stops being allowed, time windows aside).
//
// Decide answers from tables compiled at load (see decide.go): no scan over
// the rules, no allocation. Time windows are described at timeWindow
// (timewindow.go), FQDN patterns in internal/dnsname, VIP allocation in
// vip.go, the [[test]] runner in testrun.go.
package policy

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
)

// Proto is a transport protocol a flow or a port range is about.
type Proto uint8

const (
	ProtoTCP Proto = iota + 1
	ProtoUDP
	ProtoICMP
)

// String returns "tcp", "udp" or "icmp".
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Verdict is allow or deny.
type Verdict uint8

const (
	Deny Verdict = iota
	Allow
)

// String returns "allow" or "deny".
func (v Verdict) String() string {
	if v == Allow {
		return "allow"
	}
	return "deny"
}

// Reason says why a decision denied. ReasonNone goes with Allow.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonNoRule
	ReasonDenyRule
	ReasonNoService
	ReasonUnknownIdentity
	ReasonOutsideTimeWindow
	ReasonExpired
	// ReasonQuarantined: the identity is in quarantine (quarantine.go).
	ReasonQuarantined
)

// String returns the docs/design.md spelling: "no-rule", "deny-rule", "no-service",
// "unknown-identity", "outside-time-window", "expired", "quarantined", "" for
// ReasonNone.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

var reasonNames = [...]string{
	ReasonNone:              "",
	ReasonNoRule:            "no-rule",
	ReasonDenyRule:          "deny-rule",
	ReasonNoService:         "no-service",
	ReasonUnknownIdentity:   "unknown-identity",
	ReasonOutsideTimeWindow: "outside-time-window",
	ReasonExpired:           "expired",
	ReasonQuarantined:       "quarantined",
}

// ParseReason is the inverse of Reason.String for the deny reasons a
// [[test]] can expect (quarantine is not the policy's to test).
func ParseReason(s string) (Reason, bool) {
	for i, n := range reasonNames {
		if n == s && i != int(ReasonNone) && i != int(ReasonQuarantined) {
			return Reason(i), true
		}
	}
	return ReasonNone, false
}

// Decision is the answer of Decide. The same value feeds the audit log,
// explain, metrics and tests.
type Decision struct {
	Verdict Verdict
	Rule    string // name of the rule that decided; "" when none did
	Reason  Reason
	// Audit is set when the deciding deny rule says audit = true: the flow
	// would be denied but the rule is in roll-out, so the gateway lets it
	// through and logs flow.audit.
	Audit bool
	// Expires is when the allowing rule stops granting (for an allow), or
	// when the rule that would have allowed stopped (reason expired); zero
	// when the rule never expires.
	Expires time.Time
}

// Allowed reports whether the decision lets the flow through.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

// Overlay is the [overlay] table.
type Overlay struct {
	Prefix        netip.Prefix // peer addresses
	ServicePrefix netip.Prefix // service VIPs
	Domain        string       // e.g. "nhs.internal", no trailing dot
}

// Site is a [[site]]: a gateway of the mesh.
type Site struct {
	Name     string
	Key      wgkey.Public
	Address  netip.Addr // the gateway's overlay address; DNS is served here
	Endpoint string     // host:port of its WireGuard listener; may be empty
}

// Identity is an [[identity]]: a WireGuard peer (Key+Address) or a LAN
// device (Source).
type Identity struct {
	ID      int // dense index, 0..len(Identities)-1
	Name    string
	Key     wgkey.Public // zero for LAN identities
	Address netip.Addr   // overlay address; a LAN identity's is fixed or derived from its name (vip.go)
	Source  netip.Prefix // LAN source; invalid for peer identities
	Site    string       // home site
	Groups  []string

	// Set by the policy that owns the identity, for Decide: the policy,
	// and the identity's principals (see decide.go), kept here so that a
	// decision touches as few cache lines as possible.
	pol    *Policy
	nPrins uint8     // principals held inline, or 0: use prins
	inline [7]uint32 // the principals, when they fit: no extra cache line
	prins  []uint32
}

// IsLAN reports whether the identity is a LAN device named by source CIDR.
// A LAN identity has an overlay address too: its site gateway originates the
// device's cross-site flows from it.
func (i *Identity) IsLAN() bool { return i.Source.IsValid() }

// PortRange is an inclusive range of ports for one protocol; ICMP has Lo=Hi=0.
type PortRange struct {
	Proto  Proto
	Lo, Hi uint16
}

// Contains reports whether port/proto is inside the range.
func (r PortRange) Contains(port uint16, proto Proto) bool {
	return r.Proto == proto && r.Lo <= port && port <= r.Hi
}

// String returns "443/tcp", "5000-5010/udp" or "icmp".
func (r PortRange) String() string {
	switch {
	case r.Proto == ProtoICMP:
		return "icmp"
	case r.Lo == r.Hi:
		return strconv.Itoa(int(r.Lo)) + "/" + r.Proto.String()
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi)) + "/" + r.Proto.String()
}

// Endpoint is one backend entry of a service: an address (or a CIDR of
// addresses) and a port range.
type Endpoint struct {
	Prefix netip.Prefix // a single address is a /32 or /128
	Ports  PortRange
}

// Service is a [[service]].
type Service struct {
	ID        int // dense index, 0..len(Services)-1
	Name      string
	Site      string // "" for egress-only services (no site)
	VIP       netip.Addr
	Endpoints []Endpoint
	DNS       []string    // extra names, lower case, no trailing dot
	Egress    []string    // FQDN patterns (see internal/dnsname)
	Ports     []PortRange // every port the service offers (from endpoints, or `ports` for egress)

	// Set by the policy that owns the service, for Decide (see decide.go).
	pol   *Policy
	nFast uint8        // ports held in fast, or 0: use Ports
	fast  [4]PortRange // a copy of Ports when it fits, next to table
	table principalTable
}

// Offers reports whether the service has port/proto.
//
// Every service offers ICMP echo (proto ICMP, any port value): a rule without
// ports covers it like the service's other ports, a rule with ports only
// when they list "icmp".
//
// It is the one "does the service offer this port" check (Decide and the
// DNS filter's egress lookup use it too). It reads the copy of the ports
// that the owning policy keeps next to the decision table when they fit
// there, which saves Decide a cache miss.
func (s *Service) Offers(port uint16, proto Proto) bool {
	if proto == ProtoICMP {
		return true
	}
	ports := s.Ports
	if s.nFast > 0 {
		ports = s.fast[:s.nFast]
	}
	for _, r := range ports {
		if r.Contains(port, proto) {
			return true
		}
	}
	return false
}

// IsEgress reports whether the service is an FQDN egress service.
func (s *Service) IsEgress() bool { return len(s.Egress) > 0 }

// Rule is a [[rule]] as written (for explain and listings).
type Rule struct {
	Name   string
	Action Verdict
	From   []string
	To     []string
	Ports  []PortRange // empty: all of each service's ports
	When   string      // "" when none
	Audit  bool
	// Expires: at or after it the rule grants (or denies) nothing; zero
	// when it never expires. Reason is the operator's note on why.
	Expires time.Time
	Reason  string
}

// Policy is a loaded, validated, compiled policy. Immutable; safe for
// concurrent use.
type Policy struct {
	file     string
	hash     string
	overlay  Overlay
	warnings []Problem

	sites      []*Site
	identities []*Identity
	services   []*Service
	rules      []*Rule
	groups     []string
	console    *Service // built in, not in services (console.go)
	tests      []testSpec
	// quarantineAllow marks, by Service.ID, the services of
	// [quarantine] allow.
	quarantineAllow []bool

	siteByName map[string]*Site
	idByName   map[string]*Identity
	svcByName  map[string]*Service

	lookup lookupTables // data-plane lookups, see lookup.go
	dec    decideTables // compiled decision tables, see decide.go
}

// Load reads, validates and compiles a policy.toml. On failure the error is
// a *LoadError listing every problem found. Warnings go with a valid policy.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &LoadError{Problems: []Problem{{File: path, Msg: err.Error()}}}
	}
	return Parse(path, data)
}

// Problem is one error or warning, positioned where TOML gives a position.
type Problem struct {
	File      string
	Line, Col int    // 0 when unknown
	Msg       string // names the item and the thing at fault: `rule "x": unknown group "radiolgy"`
}

// Error formats as "file:line:col: msg" (or "file: msg" without a position).
func (p Problem) Error() string {
	switch {
	case p.Line > 0 && p.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return p.File + ": " + p.Msg
}

// LoadError is every error found in one file.
type LoadError struct{ Problems []Problem }

// One problem per line, in file order.
func (e *LoadError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Warnings returns valid-but-surprising findings (a rule that can never
// match, an identity in no rule, a service no rule reaches).
func (p *Policy) Warnings() []Problem { return p.warnings }

// Hash is a content hash of the policy file (hex sha256, first 16 chars);
// two gateways running the same policy report the same hash.
func (p *Policy) Hash() string { return p.hash }

// File is the path it was loaded from.
func (p *Policy) File() string { return p.file }

// Overlay returns the [overlay] table.
func (p *Policy) Overlay() Overlay { return p.overlay }

// Sites returns the sites in file order. The slice is shared: do not modify.
func (p *Policy) Sites() []*Site { return p.sites }

// Identities returns the identities, indexed by Identity.ID (file order).
func (p *Policy) Identities() []*Identity { return p.identities }

// Services returns the services, indexed by Service.ID (file order).
func (p *Policy) Services() []*Service { return p.services }

// Rules returns the rules in file order.
func (p *Policy) Rules() []*Rule { return p.rules }

// Groups returns every group declared in `groups` or held by some
// identity, sorted.
func (p *Policy) Groups() []string { return p.groups }

// Site returns the site called name, or nil.
func (p *Policy) Site(name string) *Site { return p.siteByName[name] }

// Identity returns the identity called name, or nil.
func (p *Policy) Identity(name string) *Identity { return p.idByName[name] }

// Service returns the service called name, or nil.
func (p *Policy) Service(name string) *Service { return p.svcByName[name] }

// IdentityByAddr maps an overlay source address to its identity, peer or
// LAN (cryptokey routing makes this mapping trustworthy: a peer's address
// comes only from its key, a LAN identity's only from its site gateway).
// nil when unknown.
func (p *Policy) IdentityByAddr(a netip.Addr) *Identity { return p.lookup.idByAddr[a.Unmap()] }

// SiteRoutes returns the prefixes another gateway gives site's WireGuard
// peer as AllowedIPs: the site's own address, the addresses of identities
// homed there (peers and LAN), the VIPs of its services and their endpoint
// prefixes but loopback ones (the serving host's own, reached through the
// VIP); sorted, no duplicates. nil for an unknown site. The slice is
// shared: do not modify.
func (p *Policy) SiteRoutes(site string) []netip.Prefix { return p.lookup.siteRoutes[site] }

// SiteByAddr maps an overlay address to the site gateway that owns it.
func (p *Policy) SiteByAddr(a netip.Addr) *Site { return p.lookup.siteByAddr[a.Unmap()] }

// Explain is Decide plus a sentence a person understands.
func (p *Policy) Explain(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) (Decision, string) {
	d := p.Decide(id, svc, port, proto, t)
	return d, p.explain(d, id, svc, port, proto, t)
}

// TestResult is the outcome of one [[test]].
type TestResult struct {
	Problem Problem // position and text of the test
	From    string
	To      string // as written: "pacs:443/tcp"
	Expect  Verdict
	Rule    string // the rule the test asserts (`rule = "..."`); "" when none
	Got     Decision
	Passed  bool
}
