package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// decisionFilter is the live page's filter on decisions: empty fields
// match everything.
type decisionFilter struct {
	Identity, Service, Verdict string
}

func parseFilter(r *http.Request) decisionFilter {
	v := r.URL.Query()
	return decisionFilter{Identity: v.Get("identity"), Service: v.Get("service"), Verdict: v.Get("verdict")}
}

func (f decisionFilter) match(d Decision) bool {
	return containsFold(d.Identity, f.Identity) && containsFold(d.Service, f.Service) &&
		(f.Verdict == "" || f.Verdict == d.Verdict)
}

// shownDecisions bounds the decisions table: the newest are what matter
// during a roll-out; the audit log keeps them all.
const shownDecisions = 200

// flowRow and decisionRow are what the page and the events carry: the
// same words in both, so a row added live looks like one rendered.
type flowRow struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	Service  string `json:"service"`
	Site     string `json:"site"`
	Port     string `json:"port"`
	Rule     string `json:"rule"`
	In       string `json:"in"`
	Out      string `json:"out"`
	Age      string `json:"age"`
}

type decisionRow struct {
	Time     string `json:"time"`
	Verdict  string `json:"verdict"`
	Identity string `json:"identity"`
	Service  string `json:"service"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Rule     string `json:"rule"`
	Reason   string `json:"reason"`
}

func (s *Server) flowRows() []flowRow {
	now := s.now()
	fs := s.src.Flows()
	slices.SortFunc(fs, func(a, b Flow) int { return b.Start.Compare(a.Start) })
	out := make([]flowRow, len(fs))
	for i, f := range fs {
		out[i] = flowRow{ID: f.ID, Identity: f.Identity, Service: f.Service, Site: f.Site,
			Port: fmt.Sprintf("%d/%s", f.Port, f.Proto), Rule: f.Rule,
			In: humanBytes(f.BytesIn), Out: humanBytes(f.BytesOut), Age: roughly(now.Sub(f.Start))}
	}
	return out
}

func newDecisionRow(d Decision) decisionRow {
	row := decisionRow{Time: d.Time.UTC().Format("15:04:05"), Verdict: d.Verdict, Identity: d.Identity, Service: d.Service,
		Rule: d.Rule, Reason: d.Reason}
	if d.Src.IsValid() {
		row.Src = d.Src.String()
	}
	if d.Dst.IsValid() {
		row.Dst = d.Dst.String() + "/" + d.Proto
	}
	return row
}

type flowsData struct {
	Filter    decisionFilter
	Flows     []flowRow
	Decisions []decisionRow
	Events    string // the event stream's address, with the filter
}

func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	f := parseFilter(r)
	d := flowsData{Filter: f, Flows: s.flowRows(), Events: "/events?" + r.URL.RawQuery}
	for _, dec := range s.src.Feed().Recent() {
		if len(d.Decisions) == shownDecisions {
			break
		}
		if f.match(dec) {
			d.Decisions = append(d.Decisions, newDecisionRow(dec))
		}
	}
	s.render(w, r, "flows", "Live flows", d)
}

// The live page's flow table is sent every flowsEvery (for bytes and ages),
// and within flowsSoon of a decision, which may have opened a flow: at most
// a few times a second however busy the gateway, so that each open page
// costs a bounded number of flow-table snapshots.
const (
	flowsEvery = time.Second
	flowsSoon  = 200 * time.Millisecond
)

// events is a server-sent event stream: "decision" with each new decision
// that passes the filter, and "flows" with the whole flow table.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	f := parseFilter(r)
	ch, stop := s.src.Feed().Subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	tick := time.NewTicker(flowsSoon)
	defer tick.Stop()
	if send("flows", s.flowRows()) != nil {
		return
	}
	sent, changed := time.Now(), false
	for {
		select {
		case <-r.Context().Done():
			return
		case d := <-ch:
			changed = true
			if f.match(d) && send("decision", newDecisionRow(d)) != nil {
				return
			}
		case now := <-tick.C:
			if changed || now.Sub(sent) >= flowsEvery {
				if send("flows", s.flowRows()) != nil {
					return
				}
				sent, changed = now, false
			}
		}
	}
}
