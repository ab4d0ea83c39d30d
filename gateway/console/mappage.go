package console

import (
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// maxRows bounds one page of the map: 150 identities by 100 services is
// 15,000 cells, about what a browser lays out without lag. Filters and
// paging reach the rest.
const maxRows = 150

// mapQuery is the map's filter form.
type mapQuery struct {
	Q       string // identity name contains
	Site    string // identities homed at
	Group   string // identities in
	Service string // service name contains
	By      string // "site" (default) or "group"
	Page    int
}

func parseMapQuery(r *http.Request) mapQuery {
	v := r.URL.Query()
	q := mapQuery{Q: v.Get("q"), Site: v.Get("site"), Group: v.Get("group"), Service: v.Get("service"), By: v.Get("by")}
	if q.By != "group" {
		q.By = "site"
	}
	q.Page, _ = strconv.Atoi(v.Get("page"))
	q.Page = max(q.Page, 0)
	return q
}

// url is the map's address with q, on page n.
func (q mapQuery) url(n int) string {
	v := url.Values{}
	for k, s := range map[string]string{"q": q.Q, "site": q.Site, "group": q.Group, "service": q.Service, "by": q.By} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if n > 0 {
		v.Set("page", strconv.Itoa(n))
	}
	return "/map?" + v.Encode()
}

type mapCell struct {
	Cell
	Title, Text, Href string
	Rule              string // the rule deciding the segment explain opens on
}

// html is the cell's <td>. The map writes its cells itself rather than
// through the template: 15,000 cells through html/template's escapers took
// most of a page's time. Every value is escaped here; the classes come from
// a fixed set.
func (c mapCell) html(b *strings.Builder) {
	b.WriteString(`<td class="cell `)
	b.WriteString(c.State.Class())
	if c.Mixed {
		b.WriteString(" mixed")
	}
	b.WriteString(`" title="`)
	b.WriteString(html.EscapeString(c.Title))
	b.WriteString(`"><a href="`)
	b.WriteString(html.EscapeString(c.Href))
	b.WriteString(`">`)
	b.WriteString(html.EscapeString(c.Text))
	if c.Rule != "" {
		b.WriteString("<small>")
		b.WriteString(html.EscapeString(c.Rule))
		b.WriteString("</small>")
	}
	b.WriteString("</a></td>")
}

type mapRow struct {
	Identity *policy.Identity
	Cells    template.HTML // the row's <td>s, see mapCell.html
}

type mapGroup struct {
	Name string
	Rows []mapRow
}

type mapData struct {
	Query          mapQuery
	Sites, Groups  []string
	Services       []*policy.Service
	Sections       []mapGroup
	First, Last    int // rows shown, 1-based
	Total          int
	Prev, Next     string
	Compact        bool // many columns: glyphs only, ports in the title
	At             time.Time
	Hidden, AllSvc int // services filtered out, services in all
}

func (s *Server) matrix(w http.ResponseWriter, r *http.Request) {
	p, q, t := s.src.Policy(), parseMapQuery(r), s.now()
	d := &mapData{Query: q, Groups: p.Groups(), At: t}
	for _, st := range p.Sites() {
		d.Sites = append(d.Sites, st.Name)
	}
	for _, svc := range append(slices.Clip(p.Services()), p.Console()) {
		if containsFold(svc.Name, q.Service) {
			d.Services = append(d.Services, svc)
		}
	}
	d.AllSvc = len(p.Services()) + 1
	d.Hidden = d.AllSvc - len(d.Services)
	d.Compact = len(d.Services) > 12

	sections := s.mapSections(p, q)
	for _, sec := range sections {
		d.Total += len(sec.Rows)
	}
	from := min(q.Page*maxRows, d.Total)
	to := min(from+maxRows, d.Total)
	m := newMapper(p, t)
	n := 0
	for _, sec := range sections {
		var rows []mapRow
		for _, row := range sec.Rows {
			if n >= from && n < to {
				var b strings.Builder
				for _, svc := range d.Services {
					describeCell(m.cell(row.Identity, svc), row.Identity, svc).html(&b)
				}
				row.Cells = template.HTML(b.String())
				rows = append(rows, row)
			}
			n++
		}
		if len(rows) > 0 {
			d.Sections = append(d.Sections, mapGroup{Name: sec.Name, Rows: rows})
		}
	}
	d.First, d.Last = from+1, to
	if from > 0 {
		d.Prev = q.url(q.Page - 1)
	}
	if to < d.Total {
		d.Next = q.url(q.Page + 1)
	}
	s.render(w, r, "map", "Segmentation map", d)
}

// mapSections groups the identities that pass the filter by site or by
// group (an identity in several groups is in each), sorted by name.
func (s *Server) mapSections(p *policy.Policy, q mapQuery) []mapGroup {
	bySection := map[string][]mapRow{}
	for _, id := range p.Identities() {
		if !containsFold(id.Name, q.Q) || q.Site != "" && id.Site != q.Site || q.Group != "" && !slices.Contains(id.Groups, q.Group) {
			continue
		}
		keys := []string{"site " + id.Site}
		if q.By == "group" {
			keys = keys[:0]
			for _, g := range id.Groups {
				if q.Group == "" || g == q.Group {
					keys = append(keys, "group "+g)
				}
			}
			if len(keys) == 0 {
				keys = append(keys, "no group")
			}
		}
		for _, k := range keys {
			bySection[k] = append(bySection[k], mapRow{Identity: id})
		}
	}
	var out []mapGroup
	for name, rows := range bySection {
		slices.SortFunc(rows, func(a, b mapRow) int { return strings.Compare(a.Identity.Name, b.Identity.Name) })
		out = append(out, mapGroup{Name: name, Rows: rows})
	}
	slices.SortFunc(out, func(a, b mapGroup) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// describeCell adds the words: a title listing every segment with its rule,
// the ports that are open (or a dash), and the explain link.
func describeCell(c Cell, id *policy.Identity, svc *policy.Service) mapCell {
	mc := mapCell{Cell: c}
	var title, open []string
	for _, sg := range c.Segments {
		line := sg.Ports.String() + ": " + sg.Decision.Verdict.String()
		if sg.Decision.Rule != "" {
			line += " by rule " + sg.Decision.Rule
		}
		if sg.Decision.Reason != policy.ReasonNone {
			line += " (" + sg.Decision.Reason.String() + ")"
		}
		if sg.State == StateAudit {
			line += ", in roll-out: let through"
		}
		if !sg.Decision.Expires.IsZero() && sg.Decision.Allowed() {
			line += " until " + sg.Decision.Expires.UTC().Format(time.RFC3339)
		}
		title = append(title, line)
		if sg.State >= StateLimited && sg.Ports.Proto != policy.ProtoICMP {
			open = append(open, sg.Ports.String())
		}
	}
	mc.Title = id.Name + " → " + svc.Name + "\n" + strings.Join(title, "\n")
	mc.Text = strings.Join(open, " ")
	if mc.Text == "" {
		mc.Text = "–"
	}
	ex := c.Explain()
	mc.Rule = ex.Decision.Rule
	v := url.Values{"from": {id.Name}, "to": {svc.Name}, "port": {ex.Ports.String()}}
	mc.Href = "/explain?" + v.Encode()
	return mc
}

func containsFold(s, sub string) bool {
	return sub == "" || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
