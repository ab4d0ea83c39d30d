// Package policy owns wardgate's policy: the policy.toml schema, strict
// loading with file:line errors, validation, compilation into decision
// tables, Decide, and the [[test]] runner.
//
// A *Policy is an immutable value: load, validate and compile a new one, then
// swap it in atomically. It does no I/O beyond reading its file and knows
// nothing of sockets or WireGuard.
package policy

import (
	"net/netip"
	"time"
)

// Proto is a transport protocol a flow or a port range is about.
type Proto uint8

const (
	ProtoTCP Proto = iota + 1
	ProtoUDP
	ProtoICMP
)

// String returns "tcp", "udp" or "icmp".
func (p Proto) String() string { panic("TODO") }

// Verdict is allow or deny.
type Verdict uint8

const (
	Deny Verdict = iota
	Allow
)

// String returns "allow" or "deny".
func (v Verdict) String() string { panic("TODO") }

// Reason says why a decision denied. ReasonNone goes with Allow.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonNoRule
	ReasonDenyRule
	ReasonNoService
	ReasonUnknownIdentity
	ReasonOutsideTimeWindow
)

// String returns the DESIGN.md spelling: "no-rule", "deny-rule", "no-service",
// "unknown-identity", "outside-time-window", "" for ReasonNone.
func (r Reason) String() string { panic("TODO") }

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
}

// Allowed reports whether the decision lets the flow through.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

// Key is a WireGuard public key (32 bytes, base64 in files).
type Key [32]byte

// String returns the standard base64 form.
func (k Key) String() string { panic("TODO") }

// ParseKey parses a base64 WireGuard key (public or private).
func ParseKey(s string) (Key, error) { panic("TODO") }

// Overlay is the [overlay] table.
type Overlay struct {
	Prefix        netip.Prefix // peer addresses
	ServicePrefix netip.Prefix // service VIPs
	Domain        string       // e.g. "nhs.internal", no trailing dot
}

// Site is a [[site]]: a gateway of the mesh.
type Site struct {
	Name     string
	Key      Key
	Address  netip.Addr // the gateway's overlay address; DNS is served here
	Endpoint string     // host:port of its WireGuard listener; may be empty
}

// Identity is an [[identity]]: a WireGuard peer (Key+Address) or a LAN
// device (Source).
type Identity struct {
	ID      int // dense index, 0..len(Identities)-1
	Name    string
	Key     Key          // zero for LAN identities
	Address netip.Addr   // overlay address; invalid for LAN identities
	Source  netip.Prefix // LAN source; invalid for peer identities
	Site    string       // home site
	Groups  []string
}

// IsLAN reports whether the identity is a LAN device named by source CIDR.
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
func (r PortRange) String() string { panic("TODO") }

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
	Egress    []string    // FQDN patterns (see MatchFQDN)
	Ports     []PortRange // every port the service offers (from endpoints, or `ports` for egress)
}

// Offers reports whether the service has port/proto.
func (s *Service) Offers(port uint16, proto Proto) bool { panic("TODO") }

// Rule is a [[rule]] as written (for explain and listings).
type Rule struct {
	Name   string
	Action Verdict
	From   []string
	To     []string
	Ports  []PortRange // empty: all of each service's ports
	When   string      // "" when none
	Audit  bool
}

// Policy is a loaded, validated, compiled policy. Immutable; safe for
// concurrent use.
type Policy struct {
	// fields private; see the implementation
}

// Load reads, validates and compiles a policy.toml. On failure the error is
// a *LoadError listing every problem found. Warnings go with a valid policy.
func Load(path string) (*Policy, error) { panic("TODO") }

// Parse is Load on bytes already read; name is used in messages.
func Parse(name string, data []byte) (*Policy, error) { panic("TODO") }

// Problem is one error or warning, positioned where TOML gives a position.
type Problem struct {
	File      string
	Line, Col int    // 0 when unknown
	Msg       string // names the item and the thing at fault: `rule "x": unknown group "radiolgy"`
}

// Error formats as "file:line:col: msg" (or "file: msg" without a position).
func (p Problem) Error() string { panic("TODO") }

// LoadError is every error found in one file.
type LoadError struct{ Problems []Problem }

func (e *LoadError) Error() string { panic("TODO") }

// Warnings returns valid-but-surprising findings (a rule that can never
// match, an identity in no rule, a service no rule reaches).
func (p *Policy) Warnings() []Problem { panic("TODO") }

// Hash is a content hash of the policy file (hex sha256, first 16 chars);
// two gateways running the same policy report the same hash.
func (p *Policy) Hash() string { panic("TODO") }

// File is the path it was loaded from.
func (p *Policy) File() string { panic("TODO") }

func (p *Policy) Overlay() Overlay               { panic("TODO") }
func (p *Policy) Sites() []*Site                 { panic("TODO") }
func (p *Policy) Identities() []*Identity        { panic("TODO") }
func (p *Policy) Services() []*Service           { panic("TODO") }
func (p *Policy) Rules() []*Rule                 { panic("TODO") }
func (p *Policy) Groups() []string               { panic("TODO") }
func (p *Policy) Site(name string) *Site         { panic("TODO") }
func (p *Policy) Identity(name string) *Identity { panic("TODO") }
func (p *Policy) Service(name string) *Service   { panic("TODO") }

// IdentityByAddr maps an overlay source address to its peer identity
// (cryptokey routing makes this mapping trustworthy). nil when unknown.
func (p *Policy) IdentityByAddr(a netip.Addr) *Identity { panic("TODO") }

// IdentityBySource maps a LAN source address at site to the LAN identity
// whose source CIDR holds it (longest prefix wins). nil when none.
func (p *Policy) IdentityBySource(site string, a netip.Addr) *Identity { panic("TODO") }

// SiteByAddr maps an overlay address to the site gateway that owns it.
func (p *Policy) SiteByAddr(a netip.Addr) *Site { panic("TODO") }

// ServiceByDst matches a flow destination to a service: (a) a VIP (any
// port: Decide then refuses ports the service does not offer), or (b) a
// backend address and port/proto a service lists. nil when none matches.
func (p *Policy) ServiceByDst(dst netip.AddrPort, proto Proto) *Service { panic("TODO") }

// ServiceByName resolves a DNS name (lower case, no trailing dot):
// NAME.DOMAIN or one of the service's dns names. nil when none.
func (p *Policy) ServiceByName(fqdn string) *Service { panic("TODO") }

// EgressServices returns the egress services whose patterns match fqdn.
func (p *Policy) EgressServices(fqdn string) []*Service { panic("TODO") }

// Decide answers whether id may reach svc on port/proto at time t, from
// tables compiled at load: no scan over rules, no allocation. id == nil
// gives unknown-identity; svc == nil gives no-service.
func (p *Policy) Decide(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) Decision {
	panic("TODO")
}

// CanReach reports whether some rule lets id reach svc on some port at some
// time (DNS answers service names only to such identities).
func (p *Policy) CanReach(id *Identity, svc *Service) bool { panic("TODO") }

// Explain is Decide plus a sentence a person understands.
func (p *Policy) Explain(id *Identity, svc *Service, port uint16, proto Proto, t time.Time) (Decision, string) {
	panic("TODO")
}

// TestResult is the outcome of one [[test]].
type TestResult struct {
	Problem Problem // position and text of the test
	From    string
	To      string // as written: "pacs:443/tcp"
	Expect  Verdict
	Got     Decision
	Passed  bool
}

// RunTests runs every [[test]] of the policy.
func (p *Policy) RunTests() []TestResult { panic("TODO") }

// MatchFQDN reports whether name matches pattern: "a.example.org" exact,
// "*.example.org" exactly one more label, "**.example.org" one or more; the
// apex is never implied. Both lower case, no trailing dot.
func MatchFQDN(pattern, name string) bool { panic("TODO") }
