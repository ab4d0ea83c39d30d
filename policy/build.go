package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wardgate/wardgate/internal/dnsname"
	"github.com/wardgate/wardgate/internal/wgkey"
)

// Keys each table accepts. Anything else is an error.
var (
	topKeys      = []string{"overlay", "groups", "site", "identity", "service", "rule", "test", "quarantine"}
	overlayKeys  = []string{"prefix", "service_prefix", "domain"}
	siteKeys     = []string{"name", "key", "address", "endpoint"}
	identityKeys = []string{"name", "key", "address", "source", "site", "groups"}
	serviceKeys  = []string{"name", "site", "endpoints", "vip", "dns", "egress", "ports"}
	ruleKeys     = []string{"name", "action", "from", "to", "ports", "when", "audit", "expires", "reason"}
	testKeys     = []string{"from", "to", "expect", "at", "reason", "rule"}
)

// ruleSpec is a rule with its references resolved, ready to compile.
type ruleSpec struct {
	rule   *Rule
	pos    pos
	star   bool     // from "*"
	ids    []int    // identity IDs
	groups []string // group names
	sites  []string // site names
	toAll  bool     // to "*"
	svcs   []int    // service IDs
	ports  []PortRange
	window *timeWindow
}

// expiredAt reports whether the rule has expired at t.
func (r *Rule) expiredAt(t time.Time) bool { return !r.Expires.IsZero() && !t.Before(r.Expires) }

// testSpec is a [[test]] with its references resolved.
type testSpec struct {
	prob      Problem
	label     string // how messages name it: `test 3 (a -> b)`
	from, to  string
	id        *Identity
	svc       *Service
	hasPort   bool
	port      uint16
	proto     Proto
	expect    Verdict
	at        time.Time
	hasAt     bool
	reason    Reason
	hasReason bool
	rule      string
	hasRule   bool
}

// build turns decoded TOML into a Policy, reporting every problem it finds.
func (b *builder) build(raw map[string]any) *Policy {
	p := &Policy{
		siteByName: map[string]*Site{},
		idByName:   map[string]*Identity{},
		svcByName:  map[string]*Service{},
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !contains(topKeys, k) {
			b.errorAt(b.idx.top[k], "unknown key %s (known: %s)", Quote(k), strings.Join(topKeys, ", "))
		}
	}
	b.buildOverlay(p, raw)
	keyOwner := map[wgkey.Public]*elem{}
	addrOwner := map[netip.Addr]*elem{}
	for _, e := range b.elems(raw, "site") {
		b.buildSite(p, e, keyOwner, addrOwner)
	}
	declared := b.declaredGroups(raw)
	groups := map[string]bool{}
	for _, e := range b.elems(raw, "identity") {
		b.buildIdentity(p, e, keyOwner, addrOwner, groups)
	}
	b.allocateLANAddresses(p, addrOwner)
	for _, g := range declared {
		if !groups[g] {
			b.warnAt(b.idx.top["groups"], "group %s has no members", Quote(g))
			groups[g] = true
		}
	}
	for g := range groups {
		p.groups = append(p.groups, g)
	}
	sort.Strings(p.groups)
	svcElems := b.elems(raw, "service")
	names := map[string]string{} // DNS name -> service
	if d := p.overlay.Domain; d != "" {
		names[ConsoleService+"."+d] = ConsoleService // the built-in console's name
	}
	for _, e := range svcElems {
		b.buildService(p, e, names)
	}
	b.checkEndpointClashes(p)
	b.checkLANSources(p)
	b.allocateVIPs(p, svcElems)
	b.addConsole(p)
	b.buildQuarantine(p, raw)
	for _, e := range b.elems(raw, "rule") {
		b.buildRule(p, e, groups)
	}
	for _, e := range b.elems(raw, "test") {
		b.buildTest(p, e)
	}
	return p
}

// declaredGroups reads the top-level `groups`: groups that rules may name
// before any identity is in them.
func (b *builder) declaredGroups(raw map[string]any) []string {
	if _, ok := raw["groups"]; !ok {
		return nil
	}
	e := &elem{b: b, kind: "groups", m: raw, pos: &elemPos{head: b.idx.top["groups"]}, label: "groups"}
	var out []string
	seen := map[string]bool{}
	for _, g := range e.strs("groups") {
		if err := CheckName(g); err != nil {
			e.errorf("", "group %v", err)
			continue
		}
		if seen[g] {
			e.errorf("", "group %s declared twice", Quote(g))
			continue
		}
		seen[g] = true
		out = append(out, g)
	}
	return out
}

// table is the top-level table name of the file, as an element; nil when
// the file has none (present false) or name is not a table (an error).
func (b *builder) table(raw map[string]any, name string) (e *elem, present bool) {
	v, ok := raw[name]
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		b.errorAt(b.idx.top[name], "%s must be a table [%s]", name, name)
		return nil, true
	}
	e = &elem{b: b, kind: name, m: m, pos: b.idx.tables[name], label: name}
	if e.pos == nil {
		e.pos = &elemPos{head: b.idx.top[name]}
	}
	return e, true
}

func (b *builder) buildOverlay(p *Policy, raw map[string]any) {
	e, present := b.table(raw, "overlay")
	if !present {
		b.errorAt(pos{}, "missing [overlay] table (prefix, service_prefix, domain)")
	}
	if e == nil {
		return
	}
	e.checkKeys(overlayKeys...)
	p.overlay.Prefix = e.prefix("prefix")
	p.overlay.ServicePrefix = e.prefix("service_prefix")
	o := p.overlay
	if o.Prefix.IsValid() && o.ServicePrefix.IsValid() && o.Prefix.Overlaps(o.ServicePrefix) {
		e.errorf("service_prefix", "service_prefix %s overlaps prefix %s", o.ServicePrefix, o.Prefix)
	}
	if d := e.required("domain"); d != "" {
		d = dnsname.Canonical(d)
		if err := dnsname.CheckName(d); err != nil {
			e.errorf("domain", "%v", err)
		}
		p.overlay.Domain = d
	}
}

// prefix reads a required, masked CIDR.
func (e *elem) prefix(key string) netip.Prefix {
	s := e.required(key)
	if s == "" {
		return netip.Prefix{}
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		e.errorf(key, "%s %q is not a CIDR prefix such as 100.80.0.0/16", key, s)
		return netip.Prefix{}
	}
	if pfx != pfx.Masked() {
		e.errorf(key, "%s %q has host bits set (did you mean %s?)", key, s, pfx.Masked())
		return netip.Prefix{}
	}
	return pfx
}

// addr reads an IP address.
func (e *elem) addr(key string) netip.Addr {
	s := e.str(key)
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		e.errorf(key, "%s %q is not an IP address", key, s)
		return netip.Addr{}
	}
	return a.Unmap()
}

// key reads a WireGuard public key.
func (e *elem) key(key string) wgkey.Public {
	s := e.str(key)
	if s == "" {
		return wgkey.Public{}
	}
	k, err := wgkey.ParsePublic(s)
	if err != nil {
		e.errorf(key, "%s is not a WireGuard key (32 bytes, base64): %q", key, s)
		return wgkey.Public{}
	}
	if k.IsZero() {
		e.errorf(key, "%s is the all-zero key", key)
	}
	return k
}

// name reads and checks the required name of an item.
func (e *elem) name(check func(string) error) string {
	n := e.required("name")
	if n == "" {
		return ""
	}
	if err := check(n); err != nil {
		e.errorf("name", "%v", err)
		return ""
	}
	return n
}

func (b *builder) buildSite(p *Policy, e *elem, keyOwner map[wgkey.Public]*elem, addrOwner map[netip.Addr]*elem) {
	e.checkKeys(siteKeys...)
	s := &Site{Name: e.name(CheckName)}
	if e.has("key") {
		s.Key = e.key("key")
		b.checkKeyOwner(e, s.Key, keyOwner)
	} else {
		e.errorf("", "missing key (the site gateway's WireGuard public key)")
	}
	if e.has("address") {
		s.Address = e.addr("address")
		b.checkOverlayAddr(p, e, "address", s.Address, addrOwner)
	} else {
		e.errorf("", "missing address (the site gateway's overlay address)")
	}
	s.Endpoint = e.str("endpoint")
	if s.Endpoint != "" {
		if _, port, err := splitHostPort(s.Endpoint); err != nil || port == 0 {
			e.errorf("endpoint", "endpoint %q must be host:port", s.Endpoint)
		}
	}
	if s.Name == "" {
		return
	}
	if _, dup := p.siteByName[s.Name]; dup {
		e.errorf("name", "duplicate site name %q", s.Name)
		return
	}
	p.siteByName[s.Name] = s
	p.sites = append(p.sites, s)
}

func splitHostPort(s string) (string, uint16, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("no port")
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s[:i], "["), "]")
	port, err := parsePort(s[i+1:])
	return host, port, err
}

func (b *builder) buildIdentity(p *Policy, e *elem, keyOwner map[wgkey.Public]*elem, addrOwner map[netip.Addr]*elem, groups map[string]bool) {
	e.checkKeys(identityKeys...)
	id := &Identity{Name: e.name(CheckName)}
	hasKey, hasAddr, hasSrc := e.has("key"), e.has("address"), e.has("source")
	switch {
	case hasSrc && hasKey:
		e.errorf("source", "has both source (a LAN device) and key (a WireGuard peer); give one or the other")
	case hasSrc:
		s := e.str("source")
		if s != "" {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
					a = a.Unmap()
					pfx, err = netip.PrefixFrom(a, a.BitLen()), nil
				}
			}
			switch {
			case err != nil:
				e.errorf("source", "source %q is not a CIDR prefix or address", s)
			case pfx != pfx.Masked():
				e.errorf("source", "source %q has host bits set (did you mean %s?)", s, pfx.Masked())
			case p.overlay.Prefix.IsValid() && pfx.Overlaps(p.overlay.Prefix):
				e.errorf("source", "source %s overlaps the overlay prefix %s; LAN sources are site LAN addresses", pfx, p.overlay.Prefix)
			default:
				id.Source = pfx
			}
		}
	case hasKey != hasAddr:
		if hasKey {
			e.errorf("key", "a peer identity needs an address as well as a key")
		} else {
			e.errorf("address", "a peer identity needs a key as well as an address")
		}
	case !hasKey:
		e.errorf("", "needs key and address (a WireGuard peer) or source (a LAN device)")
	}
	if hasKey && !hasSrc {
		id.Key = e.key("key")
		b.checkKeyOwner(e, id.Key, keyOwner)
	}
	if hasAddr && !(hasSrc && hasKey) {
		id.Address = e.addr("address")
		b.checkOverlayAddr(p, e, "address", id.Address, addrOwner)
	}
	if site := e.required("site"); site != "" {
		if p.siteByName[site] == nil {
			e.errorf("site", "unknown site %q", site)
		}
		id.Site = site
	}
	seen := map[string]bool{}
	for _, g := range e.strs("groups") {
		if err := CheckName(g); err != nil {
			e.errorf("groups", "group %v", err)
			continue
		}
		if seen[g] {
			e.errorf("groups", "group %q listed twice", g)
			continue
		}
		seen[g] = true
		id.Groups = append(id.Groups, g)
		groups[g] = true
	}
	if id.Name == "" {
		return
	}
	if _, dup := p.idByName[id.Name]; dup {
		e.errorf("name", "duplicate identity name %q", id.Name)
		return
	}
	id.ID = len(p.identities)
	b.idElems = append(b.idElems, e)
	p.idByName[id.Name] = id
	p.identities = append(p.identities, id)
}
