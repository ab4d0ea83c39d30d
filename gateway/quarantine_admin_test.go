package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestQuarantineAPI: the admin routes answer a playbook's calls with the
// status codes it can act on, and refuse bad input whole.
func TestQuarantineAPI(t *testing.T) {
	r := newQuarantineRig(t, t.TempDir())
	h := newAdminHandler(r.tg.gw)
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		var out map[string]any
		if strings.HasPrefix(strings.TrimSpace(rec.Body.String()), "{") {
			json.Unmarshal(rec.Body.Bytes(), &out)
		}
		return rec.Code, out
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/quarantine", "", http.StatusBadRequest, "want a JSON body"},
		{"POST", "/v1/quarantine", "{", http.StatusBadRequest, "bad JSON body"},
		{"POST", "/v1/quarantine", `{"identity":"alice","reason":"x","ttl":5}`, http.StatusBadRequest, `unknown field "ttl"`},
		{"POST", "/v1/quarantine", `{"reason":"x"}`, http.StatusBadRequest, `"identity" is required`},
		{"POST", "/v1/quarantine", `{"identity":"alice"}`, http.StatusBadRequest, "a reason is required"},
		{"POST", "/v1/quarantine", `{"identity":"mallory","reason":"x"}`, http.StatusNotFound, `unknown identity "mallory"`},
		{"POST", "/v1/quarantine", `{"identity":"leeds","reason":"x"}`, http.StatusBadRequest, "is a site gateway"},
		{"DELETE", "/v1/quarantine/alice", "", http.StatusNotFound, "not quarantined"},
		{"DELETE", "/v1/quarantine/alic", "", http.StatusNotFound, `unknown identity "alic"`},
	} {
		code, out := call(tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(out["error"].(string), tc.want) {
			t.Errorf("%s %s %s: %d %v, want %d %q", tc.method, tc.path, tc.body, code, out, tc.code, tc.want)
		}
	}
	if n := len(r.tg.gw.Quarantines()); n != 0 {
		t.Fatalf("refused calls quarantined %d identities", n)
	}
	code, out := call("POST", "/v1/quarantine", `{"identity":"alice","reason":"EDR alert 4711"}`)
	if code != http.StatusOK || out["identity"] != "alice" || out["active"] != true || out["by"] != "unknown" {
		t.Errorf("quarantine: %d %v", code, out)
	}
	if code, out = call("POST", "/v1/quarantine", `{"identity":"alice","reason":"again"}`); code != http.StatusOK || out["already"] != true || out["reason"] != "EDR alert 4711" {
		t.Errorf("quarantine again: %d %v", code, out)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/quarantine", nil))
	var list []QuarantineEntry
	if json.Unmarshal(rec.Body.Bytes(), &list); len(list) != 1 || list[0].Identity != "alice" || !list[0].InPolicy {
		t.Errorf("list: %s", rec.Body)
	}
	if code, out = call("DELETE", "/v1/quarantine/alice", `{"reason":"reimaged"}`); code != http.StatusOK || out["active"] != false || out["reason"] != "reimaged" {
		t.Errorf("release: %d %v", code, out)
	}
}

func TestDescribeCaller(t *testing.T) {
	if got := describeCaller(0, 1); !strings.HasPrefix(got, "uid 0 (root), pid 1") {
		t.Errorf("describeCaller(0, 1) = %q", got)
	}
	if got := describeCaller(4242424, 0); got != "uid 4242424" {
		t.Errorf("an unknown uid and no pid: %q", got)
	}
}
