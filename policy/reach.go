package policy

import (
	"math/bits"
	"time"
)

// CanReach reports whether some rule lets id reach svc on some port at some
// time (DNS answers service names only to such identities). It reads the
// bitset computed at load.
func (p *Policy) CanReach(id *Identity, svc *Service) bool {
	if id == nil || svc == nil {
		return false
	}
	if id = p.ownIdentity(id); id == nil {
		return false
	}
	if svc = p.ownService(svc); svc == nil {
		return false
	}
	if svc == p.console {
		return p.reachesConsole(id) // not in the bitset, which is the file's services
	}
	w := p.dec.reach[id.ID*p.dec.words+svc.ID/64]
	return w&(1<<(uint(svc.ID)%64)) != 0
}

// compileReach fills the CanReach bitset: id can reach svc when some port
// the service offers is granted by an allow rule (at some time, and not
// expired when the policy was loaded) and not taken away by a deny rule
// that applies at all times (no window, no expiry).
//
// Checking every (identity, service) pair would cost identities x services,
// so it goes by principal: each principal gets a row of the services its
// allow entries grant something of, and a row of those its always-active
// deny entries take something from. An identity's reach is the union of its
// principals' allow rows; only where one of their deny rows also applies is
// the pair checked exactly. Rules to "*" are evaluated once per distinct set
// of offered ports, not once per service.
func (p *Policy) compileReach() {
	d := &p.dec
	words := (len(p.services) + 63) / 64
	d.words = words
	d.reach = make([]uint64, len(p.identities)*words)

	sigIdx := map[string]int{}
	var sigPorts [][]PortRange
	var sigMask [][]uint64
	for _, svc := range p.services {
		k := rangesString(svc.Ports)
		i, ok := sigIdx[k]
		if !ok {
			i = len(sigPorts)
			sigIdx[k] = i
			sigPorts = append(sigPorts, svc.Ports)
			sigMask = append(sigMask, make([]uint64, words))
		}
		sigMask[i][svc.ID/64] |= 1 << (uint(svc.ID) % 64)
	}

	nP := len(d.hasAny)
	allowRow := make([][]uint64, nP)
	denyRow := make([][]uint64, nP)
	row := func(rows [][]uint64, pr int) []uint64 {
		if rows[pr] == nil {
			rows[pr] = make([]uint64, words)
		}
		return rows[pr]
	}
	for pr := 0; pr < nP; pr++ {
		if d.hasAny[pr] {
			list := d.table[tableKey(uint32(pr), anyService)]
			for i, ports := range sigPorts {
				if touches(ports, list, true, d.compiledAt) {
					orInto(row(allowRow, pr), sigMask[i])
				}
				if touches(ports, list, false, d.compiledAt) {
					orInto(row(denyRow, pr), sigMask[i])
				}
			}
		}
		for _, sid := range d.targets[pr] {
			if int(sid) == len(p.services) {
				continue // the console: not in the reach bitset
			}
			list := d.table[tableKey(uint32(pr), sid)]
			ports := p.services[sid].Ports
			if touches(ports, list, true, d.compiledAt) {
				row(allowRow, pr)[sid/64] |= 1 << (sid % 64)
			}
			if touches(ports, list, false, d.compiledAt) {
				row(denyRow, pr)[sid/64] |= 1 << (sid % 64)
			}
		}
	}

	affected := make([]uint64, words)
	var specific, anyEntries []*entry
	for _, id := range p.identities {
		reach := d.reach[id.ID*words : (id.ID+1)*words]
		clear(affected)
		anyEntries = anyEntries[:0]
		for _, pr := range d.principals[id.ID] {
			if r := allowRow[pr]; r != nil {
				orInto(reach, r)
			}
			if r := denyRow[pr]; r != nil {
				orInto(affected, r)
			}
			if d.hasAny[pr] {
				list := d.table[tableKey(pr, anyService)]
				for i := range list {
					anyEntries = append(anyEntries, &list[i])
				}
			}
		}
		for w := range reach {
			for m := reach[w] & affected[w]; m != 0; m &= m - 1 {
				sid := uint32(w*64 + bits.TrailingZeros64(m))
				specific = specific[:0]
				st := &d.bySvc[sid]
				for _, pr := range d.principals[id.ID] {
					list := st.find(pr)
					for i := range list {
						specific = append(specific, &list[i])
					}
				}
				if !reachable(p.services[sid].Ports, specific, anyEntries, d.compiledAt) {
					reach[w] &^= 1 << (sid % 64)
				}
			}
		}
	}
}

func orInto(dst, src []uint64) {
	for i, x := range src {
		dst[i] |= x
	}
}

// touches reports whether an allow entry not expired at now (allow = true)
// or an always-active deny entry (allow = false) of list covers some port
// the service offers (ports plus ICMP).
func touches(ports []PortRange, list []entry, allow bool, now time.Time) bool {
	for i := range list {
		e := &list[i]
		if e.allow != allow || (!allow && !e.alwaysDenies()) || (allow && e.expiredAt(now)) {
			continue
		}
		if e.coversSome(ports) {
			return true
		}
	}
	return false
}

// coversSome reports whether the entry covers some of the offered ports
// (or ICMP echo, which every service offers).
func (e *entry) coversSome(offered []PortRange) bool {
	if e.ports == nil {
		return true
	}
	for _, r := range e.ports {
		if r.Proto == ProtoICMP {
			return true
		}
		for _, o := range offered {
			if r.Proto == o.Proto && r.Lo <= o.Hi && o.Lo <= r.Hi {
				return true
			}
		}
	}
	return false
}

// icmpRange is the ICMP echo every service offers.
var icmpRange = PortRange{Proto: ProtoICMP}

// reachable reports whether, among the offered ports (ports plus ICMP),
// some port is allowed by an entry of specific or any and denied by no
// always-active deny entry. It does not allocate.
func reachable(ports []PortRange, specific, any []*entry, now time.Time) bool {
	lists := [2][]*entry{specific, any}
	for _, list := range lists {
		for _, e := range list {
			if e.alwaysDenies() && e.ports == nil {
				return false // everything the service offers is denied
			}
		}
	}
	// denied reports whether port/proto falls in an always-active deny.
	denied := func(port uint16, proto Proto) bool {
		for _, list := range lists {
			for _, e := range list {
				if !e.alwaysDenies() {
					continue
				}
				for _, r := range e.ports {
					if r.Contains(port, proto) {
						return true
					}
				}
			}
		}
		return false
	}
	// free reports whether the interval x has a port no deny covers: if so,
	// x.Lo or the port just after some deny range is one.
	free := func(x PortRange) bool {
		if !denied(x.Lo, x.Proto) {
			return true
		}
		for _, list := range lists {
			for _, e := range list {
				if !e.alwaysDenies() {
					continue
				}
				for _, r := range e.ports {
					if r.Proto == x.Proto && r.Hi < x.Hi && r.Hi >= x.Lo && !denied(r.Hi+1, x.Proto) {
						return true
					}
				}
			}
		}
		return false
	}
	offered := func(o PortRange, e *entry) bool {
		if e.ports == nil {
			return free(o)
		}
		for _, r := range e.ports {
			if r.Proto != o.Proto {
				continue
			}
			lo, hi := max(r.Lo, o.Lo), min(r.Hi, o.Hi)
			if lo <= hi && free(PortRange{Proto: o.Proto, Lo: lo, Hi: hi}) {
				return true
			}
		}
		return false
	}
	for _, list := range lists {
		for _, e := range list {
			if !e.allow || e.expiredAt(now) {
				continue
			}
			for _, o := range ports {
				if offered(o, e) {
					return true
				}
			}
			if offered(icmpRange, e) {
				return true
			}
		}
	}
	return false
}
