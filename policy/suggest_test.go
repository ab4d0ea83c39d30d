package policy

import "testing"

func TestNearest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cands []string
		want  string
	}{
		{"dr-khan-laptp", []string{"admin-finance-01", "dr-khan-laptop", "ward-12-desktop"}, "dr-khan-laptop"},
		{"psacs", []string{"ehr", "pacs", "print"}, "pacs"},
		{"radiolgy", []string{"estates", "radiology"}, "radiology"},
		{"xyz", []string{"ehr", "pacs"}, ""},
		{"", []string{"a"}, ""},
		// A tie goes to the smaller name, whatever the order; a far one
		// listed after the answer does not replace it.
		{"pacx", []string{"pacz", "pacy"}, "pacy"},
		{"dr-khan-laptp", []string{"dr-khan-laptop", "admin-finance-01", "mri-3"}, "dr-khan-laptop"},
	} {
		got, ok := Nearest(tc.name, tc.cands)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("Nearest(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if d := editDistance(tc.name, tc.want, 100); tc.want != "" && d > 2 {
			t.Errorf("editDistance(%q, %q) = %d", tc.name, tc.want, d)
		}
	}
}
