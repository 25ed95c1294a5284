package pop3d

import (
	"slices"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line      string
		kw, rest  string
		wantError error
	}{
		{"QUIT", "QUIT", "", nil},
		{"quit", "QUIT", "", nil},
		{"Top 1 10", "TOP", "1 10", nil},
		{"PASS  two  spaces ", "PASS", " two  spaces ", nil},
		{"", "", "", errEmpty},
		{" QUIT", "", "", errKeyword},
		{"QU", "", "", errKeyword},
		{"QUITS", "", "", errKeyword},
		{"QU1T", "", "", errKeyword},
		{"Q\xc3\x9cIT", "", "", errKeyword},
		{"USER a\tb", "", "", errControl},
		{"USER a\x00", "", "", errControl},
		{"USER a\x7f", "", "", errControl},
		{"USER \xc3\xa9", "USER", "\xc3\xa9", nil}, // UTF-8 names pass to auth
	} {
		cmd, err := parseCommand(tc.line)
		if err != tc.wantError {
			t.Errorf("%q: error %v, want %v", tc.line, err, tc.wantError)
			continue
		}
		if err == nil && (cmd.keyword != tc.kw || cmd.rest != tc.rest) {
			t.Errorf("%q: %q %q, want %q %q", tc.line, cmd.keyword, cmd.rest, tc.kw, tc.rest)
		}
	}
}

func TestArgs(t *testing.T) {
	long := "12345678901234567890123456789012345678901" // 41 octets
	for _, tc := range []struct {
		rest     string
		min, max int
		want     []string
		err      error
	}{
		{"", 0, 0, nil, nil},
		{"1", 0, 0, nil, errArgs},
		{"1", 0, 1, []string{"1"}, nil},
		{"1  2", 2, 2, []string{"1", "2"}, nil},
		{"1 2 3", 2, 2, nil, errArgs},
		{long, 1, 1, nil, errArgTooLong},
		{long[:40], 1, 1, []string{long[:40]}, nil},
	} {
		got, err := command{rest: tc.rest}.args(tc.min, tc.max)
		if err != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("args(%q, %d, %d) = %q, %v; want %q, %v", tc.rest, tc.min, tc.max, got, err, tc.want, tc.err)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		s         string
		allowZero bool
		want      int
		ok        bool
	}{
		{"1", false, 1, true},
		{"007", false, 7, true},
		{"2147483647", false, 2147483647, true},
		{"2147483648", false, 0, false},
		{"99999999999", false, 0, false},
		{"0", false, 0, false},
		{"0", true, 0, true},
		{"", true, 0, false},
		{"-1", true, 0, false},
		{"+1", true, 0, false},
		{"1_0", true, 0, false},
		{"0x10", true, 0, false},
		{" 1", true, 0, false},
		{"١", true, 0, false}, // an Arabic-Indic digit
	} {
		n, err := parseNumber(tc.s, tc.allowZero)
		if (err == nil) != tc.ok || n != tc.want {
			t.Errorf("parseNumber(%q, %v) = %d, %v; want %d, ok %v", tc.s, tc.allowZero, n, err, tc.want, tc.ok)
		}
	}
}
