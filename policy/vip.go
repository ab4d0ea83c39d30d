package policy

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"sort"
)

// Derived addresses. A service without a fixed `vip` gets an address derived
// from its name alone: FNV-1a of the name picks a host in service_prefix, and
// a collision moves on to the next free address. Services are allocated in
// name order after every fixed VIP is reserved, so the result does not depend
// on the order of the file, and adding or removing another service moves no
// existing VIP unless the two names collide (rare: a /16 has 65,534 hosts).
// The network address, and for IPv4 the broadcast address, are never used.
// Egress-only services get no VIP.
//
// A LAN identity without an `address` gets its overlay address the same way
// inside [overlay] prefix, after every site's and identity's fixed address
// is reserved, in name order among the LAN identities.

// usableVIP reports whether a (inside sp) may be a VIP.
func usableVIP(sp netip.Prefix, a netip.Addr) bool {
	if a == sp.Addr() {
		return false
	}
	if a.Is4() && sp.Bits() < 32 {
		last := hostAt(sp, hostSpace(sp)+1)
		return a != last
	}
	return true
}

// hostSpace is the number of usable host offsets (1..n) in sp, capped at
// 2^62 for big IPv6 prefixes.
func hostSpace(sp netip.Prefix) uint64 {
	hostBits := sp.Addr().BitLen() - sp.Bits()
	if hostBits > 62 {
		return 1 << 62
	}
	n := uint64(1) << hostBits
	if sp.Addr().Is4() {
		if n <= 2 {
			return 0
		}
		return n - 2 // no network, no broadcast
	}
	return n - 1 // no network (subnet-router anycast)
}

// hostAt returns the address at offset off from sp's network address.
func hostAt(sp netip.Prefix, off uint64) netip.Addr {
	b := sp.Addr().As16()
	lo := binary.BigEndian.Uint64(b[8:])
	hi := binary.BigEndian.Uint64(b[:8])
	sum := lo + off
	if sum < lo {
		hi++
	}
	binary.BigEndian.PutUint64(b[8:], sum)
	binary.BigEndian.PutUint64(b[:8], hi)
	a := netip.AddrFrom16(b)
	if sp.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

func vipHash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// allocateVIPs checks fixed VIPs for clashes and allocates the others.
func (b *builder) allocateVIPs(p *Policy, _ []*elem) {
	sp := p.overlay.ServicePrefix
	used := map[netip.Addr]string{}
	var auto []*Service
	for _, svc := range p.services {
		switch {
		case svc.VIP.IsValid():
			if other, ok := used[svc.VIP]; ok {
				b.svcElems[svc.ID].errorf("vip", "vip %s is already service %q's", svc.VIP, other)
				continue
			}
			used[svc.VIP] = svc.Name
		case len(svc.Endpoints) > 0:
			auto = append(auto, svc)
		}
	}
	if !sp.IsValid() || len(auto) == 0 {
		return
	}
	n := hostSpace(sp)
	if uint64(len(used))+uint64(len(auto)) > n {
		b.errorAt(b.idx.tables["overlay"].key("service_prefix"), "overlay: service_prefix %s has %d usable addresses, too few for %d services", sp, n, len(used)+len(auto))
		return
	}
	sort.Slice(auto, func(i, j int) bool { return auto[i].Name < auto[j].Name })
	for _, svc := range auto {
		svc.VIP = deriveAddr(sp, n, svc.Name, func(a netip.Addr) bool { _, ok := used[a]; return ok })
		used[svc.VIP] = svc.Name
	}
}

// deriveAddr picks the address of name among the n host offsets of pfx:
// FNV-1a of the name, then the next offset that is not taken. The caller
// makes sure one is free.
func deriveAddr(pfx netip.Prefix, n uint64, name string, taken func(netip.Addr) bool) netip.Addr {
	off := vipHash(name) % n
	for {
		if a := hostAt(pfx, off+1); !taken(a) {
			return a
		}
		off = (off + 1) % n
	}
}

// allocateLANAddresses gives each LAN identity without a fixed address one
// derived from its name (see above). addrOwner holds every fixed address.
func (b *builder) allocateLANAddresses(p *Policy, addrOwner map[netip.Addr]*elem) {
	pfx := p.overlay.Prefix
	var auto []*Identity
	for _, id := range p.identities {
		if id.IsLAN() && !id.Address.IsValid() {
			auto = append(auto, id)
		}
	}
	if !pfx.IsValid() || len(auto) == 0 {
		return
	}
	n := hostSpace(pfx)
	if uint64(len(addrOwner))+uint64(len(auto)) > n {
		b.errorAt(b.idx.tables["overlay"].key("prefix"), "overlay: prefix %s has %d usable addresses, too few for %d sites and identities", pfx, n, len(addrOwner)+len(auto))
		return
	}
	sort.Slice(auto, func(i, j int) bool { return auto[i].Name < auto[j].Name })
	derived := map[netip.Addr]bool{}
	for _, id := range auto {
		id.Address = deriveAddr(pfx, n, id.Name, func(a netip.Addr) bool { _, fixed := addrOwner[a]; return fixed || derived[a] })
		derived[id.Address] = true
	}
}
