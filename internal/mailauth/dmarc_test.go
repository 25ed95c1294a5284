package mailauth

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tsvRows reads a tab-separated file, skipping comments.
func tsvRows(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" && !strings.Contains(line, "\t") {
			continue
		}
		rows = append(rows, strings.Split(line, "\t"))
	}
	return rows
}

func TestDMARCParseCases(t *testing.T) {
	dir := conformanceDir(t)
	kinds := map[string]error{
		"OKAY":                nil,
		"ERROR_EMPTY":         ErrDMARCEmpty,
		"ERROR_BAD_VERSION":   ErrDMARCBadVersion,
		"ERROR_BAD_VALUE":     ErrDMARCBadValue,
		"ERROR_NO_REQUIRED_P": ErrDMARCNoPolicy,
	}
	// OpenDMARC accepts "p=n" as an abbreviation of none; RFC 7489 section
	// 6.3 lists only none, quarantine and reject, and section 6.6.3 says a
	// record without a valid p= is not applied. posthorn follows the RFC.
	deviations := map[string]error{"v=DMARC1; p=n;": ErrDMARCBadValue}
	rows := tsvRows(t, filepath.Join(dir, "dmarc", "opendmarc", "parse-cases.tsv"))
	if len(rows) != 19 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, row := range rows {
		want, ok := kinds[row[1]]
		if !ok {
			t.Fatalf("unknown outcome %q", row[1])
		}
		if d, ok := deviations[row[0]]; ok {
			want = d
		}
		rec, err := ParseDMARC(row[0])
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("%q: %v, want %v", row[0], err, want)
		}
		if err == nil && (rec.Policy == "" || rec.Pct != 100) {
			t.Errorf("%q: %+v", row[0], rec)
		}
	}
	// What the fields hold.
	rec, err := ParseDMARC("v=DMARC1; p=Reject; sp=none; adkim=s; aspf=r; pct=20; rua=mailto:x@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if *rec != (DMARCRecord{Policy: PolicyReject, SubdomainPolicy: PolicyNone, ADKIM: AlignStrict, ASPF: AlignRelaxed, Pct: 20}) {
		t.Errorf("%+v", rec)
	}
	rec, _ = ParseDMARC("v=DMARC1;p=quarantine")
	if rec.SubdomainPolicy != PolicyQuarantine || rec.ADKIM != AlignRelaxed {
		t.Errorf("defaults: %+v", rec)
	}
	for _, bad := range []string{"v=DMARC1; p=none; p=reject", "v=DMARC1; p=none; pct=-1", "v=DMARC1; p=none; adkim=x", "p=none; v=DMARC1"} {
		if _, err := ParseDMARC(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDMARCAlignmentCases(t *testing.T) {
	dir := conformanceDir(t)
	rows := tsvRows(t, filepath.Join(dir, "dmarc", "opendmarc", "alignment-cases.tsv"))
	if len(rows) != 10 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, row := range rows {
		mode := AlignRelaxed
		if row[2] == "strict" {
			mode = AlignStrict
		}
		want := row[3] == "0"
		if got := Aligned(row[0], row[1], mode); got != want {
			t.Errorf("Aligned(%q, %q, %s) = %v, want %v", row[0], row[1], row[2], got, want)
		}
	}
	// Relaxed alignment is by organisational domain, not by suffix.
	for _, tc := range []struct {
		from, auth string
		want       bool
	}{
		{"mail.example.co.uk", "example.co.uk", true},
		{"example.co.uk", "other.co.uk", false},
		{"a.example.com", "notexample.com", false},
		{"example.com", "", false},
	} {
		if got := Aligned(tc.from, tc.auth, AlignRelaxed); got != tc.want {
			t.Errorf("Aligned(%q, %q, relaxed) = %v", tc.from, tc.auth, got)
		}
	}
}

func TestDMARCFromDomainCases(t *testing.T) {
	dir := conformanceDir(t)
	rows := tsvRows(t, filepath.Join(dir, "dmarc", "opendmarc", "from-domain-cases.tsv"))
	if len(rows) != 15 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, row := range rows {
		// OpenDMARC takes the first address; posthorn returns them all
		// and refuses DMARC pass when there is more than one domain.
		got := FromDomains(row[0])
		if len(got) == 0 || got[0] != row[1] {
			t.Errorf("FromDomains(%q) = %v, want %s first", row[0], got, row[1])
		}
	}
	if got := FromDomains("a@x.example, \"b, c\" <b@y.example>, (c@z) d@X.Example."); strings.Join(got, " ") != "x.example y.example x.example" {
		t.Errorf("list: %v", got)
	}
	if got := FromDomains("undisclosed-recipients:;"); len(got) != 0 {
		t.Errorf("group: %v", got)
	}
}

// TestPSL runs the Public Suffix List's own tests (tests.txt, and
// test_psl.txt's checkPublicSuffix calls) through OrganizationalDomain, which
// uses golang.org/x/net/publicsuffix's compiled-in copy of the list.
func TestPSL(t *testing.T) {
	dir := conformanceDir(t)
	type psl struct{ in, want string }
	var cases []psl
	for _, line := range strings.Split(string(readFile(t, filepath.Join(dir, "dmarc", "psl", "tests.txt"))), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "//") {
			continue
		}
		cases = append(cases, psl{f[0], f[1]})
	}
	re := regexp.MustCompile(`^checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);`)
	n := len(cases)
	for _, line := range strings.Split(string(readFile(t, filepath.Join(dir, "dmarc", "psl", "test_psl.txt"))), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cases = append(cases, psl{strings.Trim(m[1], "'"), strings.Trim(m[2], "'")})
	}
	if n < 70 || len(cases)-n < 70 {
		t.Fatalf("%d + %d cases", n, len(cases)-n)
	}
	failed := 0
	for _, c := range cases {
		in := c.in
		if in == "null" {
			in = ""
		}
		want := c.want
		if want == "null" {
			want = ""
		}
		if got := OrganizationalDomain(in); got != want {
			failed++
			t.Errorf("OrganizationalDomain(%q) = %q, want %q", c.in, got, want)
		}
	}
	t.Logf("PSL: %d cases from tests.txt, %d from test_psl.txt, %d failed", n, len(cases)-n, failed)
}

// TestEvaluateDMARC covers record discovery, alignment, sp=, pct= and the
// From-domain rules with an in-memory DNS.
func TestEvaluateDMARC(t *testing.T) {
	dns := newMemDNS().
		TXT("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine; adkim=s").
		TXT("_dmarc.none.example", "v=DMARC1; p=none").
		TXT("_dmarc.pct.example", "v=DMARC1; p=reject; pct=30").
		TXT("_dmarc.bad.example", "v=DMARC1; p=bogus").
		TXT("_dmarc.two.example", "v=DMARC1; p=none", "v=DMARC1; p=reject").
		TXT("_dmarc.other.example", "v=spf1 -all")
	dns.name("_dmarc.tmp.example").servfail = true
	spfPass := func(d string) SPFCheck { return SPFCheck{Result: SPFPass, Domain: d} }
	dkimPass := func(d string) []DKIMSignature { return []DKIMSignature{{Domain: d, Result: DKIMPass}} }
	always := func() int { return 0 }
	never := func() int { return 99 }
	for _, tc := range []struct {
		name    string
		from    []string
		spf     SPFCheck
		dkim    []DKIMSignature
		pick    func() int
		want    DMARCResultValue
		applied Policy
		recAt   string
	}{
		{"spf aligned relaxed", []string{"a@mail.example.com"}, spfPass("example.com"), nil, nil, DMARCPass, PolicyNone, "example.com"},
		{"dkim strict needs the exact domain", []string{"a@mail.example.com"}, SPFCheck{Result: SPFFail}, dkimPass("example.com"), nil, DMARCFail, PolicyQuarantine, "example.com"},
		{"dkim exact", []string{"a@example.com"}, SPFCheck{}, dkimPass("EXAMPLE.com"), nil, DMARCPass, PolicyNone, "example.com"},
		{"failing dkim does not count", []string{"a@example.com"}, SPFCheck{}, []DKIMSignature{{Domain: "example.com", Result: DKIMFail}}, nil, DMARCFail, PolicyReject, "example.com"},
		{"spf pass unaligned", []string{"a@example.com"}, spfPass("example.net"), nil, nil, DMARCFail, PolicyReject, "example.com"},
		{"spf softfail aligned", []string{"a@example.com"}, SPFCheck{Result: SPFSoftFail, Domain: "example.com"}, nil, nil, DMARCFail, PolicyReject, "example.com"},
		{"no record", []string{"a@nowhere.example"}, SPFCheck{}, nil, nil, DMARCNone, PolicyNone, ""},
		{"p=none", []string{"a@none.example"}, SPFCheck{}, nil, nil, DMARCFail, PolicyNone, "none.example"},
		{"pct sampled in", []string{"a@pct.example"}, SPFCheck{}, nil, always, DMARCFail, PolicyReject, "pct.example"},
		{"pct sampled out", []string{"a@pct.example"}, SPFCheck{}, nil, never, DMARCFail, PolicyQuarantine, "pct.example"},
		{"bad record", []string{"a@bad.example"}, SPFCheck{}, nil, nil, DMARCPermError, PolicyNone, "bad.example"},
		{"two records", []string{"a@two.example"}, SPFCheck{}, nil, nil, DMARCNone, PolicyNone, "two.example"},
		{"non-DMARC TXT ignored", []string{"a@other.example"}, SPFCheck{}, nil, nil, DMARCNone, PolicyNone, ""},
		{"temporary failure", []string{"a@tmp.example"}, SPFCheck{}, nil, nil, DMARCTempError, PolicyNone, "tmp.example"},
		{"no From", nil, spfPass("example.com"), nil, nil, DMARCNone, PolicyNone, ""},
		{"two From fields, one domain", []string{"a@example.com", "b@example.com"}, spfPass("example.com"), nil, nil, DMARCPass, PolicyNone, "example.com"},
		// A second From domain never gets a pass, and its failure still
		// applies its policy: a forged From cannot hide behind a good one.
		{"two From domains", []string{"a@none.example, b@other.example"}, spfPass("none.example"), nil, nil, DMARCPermError, PolicyNone, ""},
		{"two From domains, one p=reject", []string{"a@none.example", "b@example.com"}, spfPass("none.example"), nil, nil, DMARCFail, PolicyReject, "example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := EvaluateDMARC(context.Background(), dns, tc.from, tc.spf, tc.dkim, tc.pick)
			if c.Result != tc.want || c.Applied != tc.applied || c.RecordDomain != tc.recAt {
				t.Errorf("got %s applied=%s at %q (%s), want %s applied=%s at %q", c.Result, c.Applied, c.RecordDomain, c.Reason, tc.want, tc.applied, tc.recAt)
			}
		})
	}
}
