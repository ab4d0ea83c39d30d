package suggest

import (
	"slices"
	"strings"
)

// cover is one entry of a proposed `from` and the identities it names.
type cover struct {
	name    string
	members []int // identity IDs, ascending
}

// members returns, once per Collector, the identities of each site and of
// each group, in ID order.
func (c *Collector) members() (sites, groups []cover) {
	if c.sites != nil || c.groups != nil {
		return c.sites, c.groups
	}
	bySite, byGroup := map[string][]int{}, map[string][]int{}
	for _, id := range c.pol.Identities() {
		bySite[id.Site] = append(bySite[id.Site], id.ID)
		for _, g := range id.Groups {
			byGroup[g] = append(byGroup[g], id.ID)
		}
	}
	c.sites = []cover{}
	for _, s := range c.pol.Sites() {
		if m := bySite[s.Name]; len(m) > 0 {
			c.sites = append(c.sites, cover{"site:" + s.Name, m})
		}
	}
	c.groups = []cover{}
	for _, g := range c.pol.Groups() {
		if m := byGroup[g]; len(m) > 0 {
			c.groups = append(c.groups, cover{"group:" + g, m})
		}
	}
	return c.sites, c.groups
}

// generalise turns the identities seen on one service port into a `from`:
//
//  1. site:NAME for every site all of whose identities (two or more) were
//     seen: the site is exactly who was seen there;
//  2. then, over the identities still uncovered, group:NAME for the group
//     that covers most of them, among the groups with at least two seen
//     members making up at least GroupThreshold of the group (ties: the
//     larger share, then the name), and again until no such group covers
//     another one;
//  3. each identity still uncovered by name.
//
// A group's share counts every seen member, covered already or not, since
// it measures how much of the group needs the access. The generalisation
// grants unseen members too: the evidence lists them (Principal.Unseen).
func (c *Collector) generalise(seen map[int]Tally) []cover {
	sites, groups := c.members()
	covered := map[int]bool{}
	var out []cover
	for _, s := range sites {
		if len(s.members) >= 2 && countSeen(s.members, seen) == len(s.members) {
			out = append(out, s)
			for _, id := range s.members {
				covered[id] = true
			}
		}
	}
	type candidate struct {
		cover
		share float64
	}
	var cands []candidate
	for _, g := range groups {
		n := countSeen(g.members, seen)
		if share := float64(n) / float64(len(g.members)); n >= 2 && share >= c.opts.GroupThreshold {
			cands = append(cands, candidate{g, share})
		}
	}
	var picked []cover
	for {
		best, bestNew := -1, 0
		for i, g := range cands {
			n := 0
			for _, id := range g.members {
				if _, ok := seen[id]; ok && !covered[id] {
					n++
				}
			}
			if n == 0 {
				continue
			}
			if best < 0 || n > bestNew || n == bestNew && (g.share > cands[best].share || g.share == cands[best].share && g.name < cands[best].name) {
				best, bestNew = i, n
			}
		}
		if best < 0 {
			break
		}
		picked = append(picked, cands[best].cover)
		for _, id := range cands[best].members {
			covered[id] = true
		}
	}
	slices.SortFunc(picked, func(a, b cover) int { return strings.Compare(a.name, b.name) })
	out = append(out, picked...)
	var single []cover
	for id := range seen {
		if !covered[id] {
			single = append(single, cover{c.pol.Identities()[id].Name, []int{id}})
		}
	}
	slices.SortFunc(single, func(a, b cover) int { return strings.Compare(a.name, b.name) })
	return append(out, single...)
}

func countSeen(members []int, seen map[int]Tally) int {
	n := 0
	for _, id := range members {
		if _, ok := seen[id]; ok {
			n++
		}
	}
	return n
}

// evidence describes cv with the identities seen on the proposal's ports.
func (c *Collector) evidence(cv cover, seen map[int]Tally) Principal {
	p := Principal{Name: cv.name, Members: len(cv.members)}
	for _, id := range cv.members {
		name := c.pol.Identities()[id].Name
		if t, ok := seen[id]; ok {
			p.Seen = append(p.Seen, name)
			p.Tally.merge(t)
		} else {
			p.Unseen = append(p.Unseen, name)
		}
	}
	slices.Sort(p.Seen)
	slices.Sort(p.Unseen)
	return p
}
