package demo

import (
	"bytes"
	_ "embed"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
)

// policyVars are what changes between versions of policy.toml during the
// demo: where EHR runs, and whether radiology may still read PACS.
type policyVars struct {
	Keys               map[string]string // public keys by site or identity name
	Sites              []siteSpec
	Clients            []clientSpec
	PACS               string // York's PACS web viewer, host:port
	EHRSite, EHR       string // where EHR runs and its backend
	FileWeb            string // the file share's web front end at Leeds
	Patch              string // York's patch server (updates, EDR definitions)
	RadiologyReadsPACS bool
	Domain             string // the overlay domain
	Suggested          string // rules from wardgate suggest, reviewed (scene_suggest.go)
}

// policyTemplate is policy.toml of the demo trust, filled with policyVars.
//
//go:embed policy.toml.tmpl
var policyText string

var policyTemplate = template.Must(template.New("policy").Parse(policyText))

// writePolicy writes policy.toml from w.vars, atomically (temporary file
// and rename), as an operator's deployment would. It returns the lines
// that changed, as a diff.
func (w *world) writePolicy() ([]string, error) {
	var b bytes.Buffer
	if err := policyTemplate.Execute(&b, w.vars); err != nil {
		return nil, err
	}
	path := filepath.Join(w.dir, "policy.toml")
	old, _ := os.ReadFile(path) // none the first time
	tmp := filepath.Join(w.dir, ".policy.toml.tmp")
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return lineDiff(string(old), b.String()), nil
}

// lineDiff returns the lines only in a ("- ") and only in b ("+ "), in
// order, by longest common subsequence: policy.toml is short. It matches
// from the end, so that a removed [[rule]] shows with its own header, and
// lists removals before additions.
func lineDiff(a, b string) []string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	slices.Reverse(x)
	slices.Reverse(y)
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			if y[j] != "" {
				out = append(out, "+ "+y[j])
			}
			j++
		default:
			if x[i] != "" {
				out = append(out, "- "+x[i])
			}
			i++
		}
	}
	slices.Reverse(out)
	return out
}
